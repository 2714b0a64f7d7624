"""Digest authentication: RFC 2617 §3.5 and RFC 7616 §3.9.1 vectors, real challenge headers,
the stateless-nonce verifier and replay protection."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sip.auth import (
    DigestAlgorithm,
    DigestChallenge,
    DigestClient,
    DigestCredentials,
    DigestError,
    DigestVerifier,
    UnsupportedAlgorithmError,
    VerifyResult,
    build_authorization,
    digest_response,
    select_challenge,
)

# RFC 2617 §3.5 (password "Circle Of Life", capital O)
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_RESPONSE = "6629fae49393a05397450978507c4ef1"

# RFC 7616 §3.9.1 (password "Circle of Life", lower-case o: erratum 4495)
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC7616_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def rfc7616_challenge(algorithm: str) -> str:
    return (
        'Digest\r\n realm="http-auth@example.org",\r\n qop="auth, auth-int",\r\n'
        f" algorithm={algorithm},\r\n"
        f' nonce="{RFC7616_NONCE}",\r\n opaque="{RFC7616_OPAQUE}"'
    ).replace("\r\n", "")  # header unfolded by the SIP parser


def test_rfc2617_example() -> None:
    challenge = DigestChallenge.parse(RFC2617_CHALLENGE)
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.algorithm is DigestAlgorithm.MD5
    header = build_authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        nc=1,
        cnonce="0a4f113b",
    )
    creds = DigestCredentials.parse(header)
    assert creds.response == RFC2617_RESPONSE
    assert creds.qop == "auth"
    assert creds.nc == 1
    assert creds.cnonce == "0a4f113b"
    assert creds.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    assert creds.uri == "/dir/index.html"
    assert "nc=00000001" in header
    assert "qop=auth," in header


def test_rfc2617_example_authorization_header_parses() -> None:
    # the Authorization header exactly as printed in RFC 2617 §3.5
    header = (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
        'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    creds = DigestCredentials.parse(header)
    assert creds.username == "Mufasa"
    assert creds.nc == 1
    assert creds.qop == "auth"
    recomputed = digest_response(
        creds.algorithm,
        username=creds.username,
        realm=creds.realm,
        password="Circle Of Life",
        method="GET",
        uri=creds.uri,
        nonce=creds.nonce,
        qop=creds.qop,
        nc=creds.nc,
        cnonce=creds.cnonce,
    )
    assert recomputed == creds.response


@pytest.mark.parametrize(
    ("algorithm", "expected"), [("MD5", RFC7616_MD5), ("SHA-256", RFC7616_SHA256)]
)
def test_rfc7616_examples(algorithm: str, expected: str) -> None:
    challenge = DigestChallenge.parse(rfc7616_challenge(algorithm))
    assert challenge.algorithm.value == algorithm
    header = build_authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        nc=1,
        cnonce=RFC7616_CNONCE,
    )
    assert f'response="{expected}"' in header
    assert f"algorithm={algorithm}" in header
    assert f'opaque="{RFC7616_OPAQUE}"' in header


def test_rfc7616_wrong_password_case_differs() -> None:
    challenge = DigestChallenge.parse(rfc7616_challenge("MD5"))
    header = build_authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        nc=1,
        cnonce=RFC7616_CNONCE,
    )
    assert RFC7616_MD5 not in header


def test_rfc2069_style_challenge_without_qop() -> None:
    # RFC 2069 §2.4 example: password "CircleOfLife", response 1949323746fe6a43ef61f9606e7febea
    challenge = DigestChallenge.parse(
        'Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    header = build_authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="CircleOfLife",
        nc=1,
        cnonce="ignored",
    )
    creds = DigestCredentials.parse(header)
    assert creds.response == "1949323746fe6a43ef61f9606e7febea"
    assert creds.qop is None
    assert creds.nc is None
    assert creds.cnonce is None
    assert "qop" not in header
    assert "nc=" not in header


def _hex(alg: str, text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.new(alg, data).hexdigest()


def test_auth_int_when_only_auth_int_offered() -> None:
    # oracle: the RFC 7616 §3.4 formulas written out with hashlib
    challenge = DigestChallenge.parse(
        'Digest realm="sip.example.com", nonce="abc123", qop="auth-int", algorithm=SHA-256'
    )
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    header = build_authorization(
        challenge,
        method="INVITE",
        uri="sip:bob@example.com",
        username="alice",
        password="secret",
        nc=2,
        cnonce="c0ffee",
        body=body,
    )
    ha1 = _hex("sha256", "alice:sip.example.com:secret")
    ha2 = _hex("sha256", f"INVITE:sip:bob@example.com:{_hex('sha256', body)}")
    expected = _hex("sha256", f"{ha1}:abc123:00000002:c0ffee:auth-int:{ha2}")
    creds = DigestCredentials.parse(header)
    assert creds.qop == "auth-int"
    assert creds.response == expected


def test_md5_sess_oracle() -> None:
    challenge = DigestChallenge.parse(
        'Digest realm="r", nonce="n0", qop="auth", algorithm=MD5-sess'
    )
    header = build_authorization(
        challenge, method="REGISTER", uri="sip:r", username="u", password="p", nc=3, cnonce="cn"
    )
    ha1 = _hex("md5", f"{_hex('md5', 'u:r:p')}:n0:cn")
    ha2 = _hex("md5", "REGISTER:sip:r")
    assert DigestCredentials.parse(header).response == _hex(
        "md5", f"{ha1}:n0:00000003:cn:auth:{ha2}"
    )


def test_sha512_256_oracle() -> None:
    challenge = DigestChallenge.parse(
        'Digest realm="r", nonce="n", qop="auth", algorithm=SHA-512-256'
    )
    header = build_authorization(
        challenge, method="INVITE", uri="sip:x@r", username="u", password="p", nc=1, cnonce="c"
    )
    ha1 = _hex("sha512_256", "u:r:p")
    ha2 = _hex("sha512_256", "INVITE:sip:x@r")
    assert DigestCredentials.parse(header).response == _hex(
        "sha512_256", f"{ha1}:n:00000001:c:auth:{ha2}"
    )


def test_digest_uri_is_request_uri_string_verbatim() -> None:
    challenge = DigestChallenge.parse('Digest realm="asterisk", nonce="1", qop="auth"')
    uri = "sip:+4930123456@trunk.example.net;user=phone"
    header = build_authorization(
        challenge, method="INVITE", uri=uri, username="u", password="p", nc=1, cnonce="c"
    )
    assert DigestCredentials.parse(header).uri == uri


# ---- real challenge headers -----------------------------------------------------------------

ASTERISK_CHAN_SIP = 'Digest algorithm=MD5, realm="asterisk", nonce="4b6b0a1c"'
ASTERISK_PJSIP = (
    'Digest realm="asterisk",nonce="1712345678/8d3c2f2ee4d9c6a5b9a6b2c1a2b3c4d5",'
    'opaque="6a1b2c3d4e5f6a7b",algorithm=md5,qop="auth"'
)
KAMAILIO = (
    'Digest realm="sip.example.org", nonce="ZmlsZXRpbWU6MTcxMjM0NTY3OGI0ZjM2MTJiMWQzYWY0",'
    ' qop="auth,auth-int"'
)
KAMAILIO_SHA = (
    'Digest realm="sip.example.org", nonce="Zmk3ZGZkYzE3MTIzNDU2NzhiNGYzNjEy", qop="auth",'
    ' algorithm=SHA-256'
)
FREESWITCH = (
    'Digest realm="10.0.0.5", nonce="8f0e2c7a-9d1b-4c3e-b6a5-1f2e3d4c5b6a", algorithm=MD5,'
    ' qop="auth"'
)
# tests/data/sipp/uas_auth.xml
SIPP = (
    'Digest realm="sipp.test", nonce="47ebe028cda119c35d4877b383027d28da013815", qop="auth",'
    " algorithm=MD5"
)
QUOTED_ALGORITHM = 'Digest realm="pbx", nonce="abc", algorithm="SHA-256", qop="auth", stale=TRUE'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (ASTERISK_CHAN_SIP, ("asterisk", DigestAlgorithm.MD5, (), None, False)),
        (ASTERISK_PJSIP, ("asterisk", DigestAlgorithm.MD5, ("auth",), "6a1b2c3d4e5f6a7b", False)),
        (KAMAILIO, ("sip.example.org", DigestAlgorithm.MD5, ("auth", "auth-int"), None, False)),
        (KAMAILIO_SHA, ("sip.example.org", DigestAlgorithm.SHA256, ("auth",), None, False)),
        (FREESWITCH, ("10.0.0.5", DigestAlgorithm.MD5, ("auth",), None, False)),
        (SIPP, ("sipp.test", DigestAlgorithm.MD5, ("auth",), None, False)),
        (QUOTED_ALGORITHM, ("pbx", DigestAlgorithm.SHA256, ("auth",), None, True)),
    ],
)
def test_real_challenges(
    value: str,
    expected: tuple[str, DigestAlgorithm, tuple[str, ...], str | None, bool],
) -> None:
    realm, algorithm, qop, opaque, stale = expected
    challenge = DigestChallenge.parse(value)
    assert challenge.realm == realm
    assert challenge.algorithm is algorithm
    assert challenge.qop == qop
    assert challenge.opaque == opaque
    assert challenge.stale is stale
    # what we print reads back the same
    assert DigestChallenge.parse(str(challenge)) == challenge


def test_pjsip_nonce_keeps_slash() -> None:
    assert DigestChallenge.parse(ASTERISK_PJSIP).nonce == (
        "1712345678/8d3c2f2ee4d9c6a5b9a6b2c1a2b3c4d5"
    )


def test_quoted_string_escapes() -> None:
    challenge = DigestChallenge.parse(r'Digest realm="a \"quoted\" realm\\x", nonce="n"')
    assert challenge.realm == 'a "quoted" realm\\x'
    assert DigestChallenge.parse(str(challenge)).realm == challenge.realm


def test_userhash_and_extensions_ignored() -> None:
    challenge = DigestChallenge.parse(
        'Digest realm="r", nonce="n", userhash=true, charset=UTF-8, foo="bar"'
    )
    assert challenge.realm == "r"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        'Basic realm="r"',
        'Digest nonce="n"',  # no realm
        'Digest realm="r"',  # no nonce
        'Digest realm="r, nonce="n"',  # unterminated quote
        'Digest realm="r" nonce="n"',  # missing comma
        'Digest realm="r", realm="s", nonce="n"',  # duplicate
        'Digest realm="r", nonce=, qop="auth"',
        'Digest realm="r", nonce="n\x00"',
        'Digest realm="r", = "x", nonce="n"',
    ],
)
def test_malformed_challenges(value: str) -> None:
    with pytest.raises(DigestError):
        DigestChallenge.parse(value)


def test_unknown_algorithm_is_its_own_error() -> None:
    with pytest.raises(UnsupportedAlgorithmError):
        DigestChallenge.parse('Digest realm="r", nonce="n", algorithm=SHA-1')


def test_select_challenge_takes_first_supported() -> None:
    values = [
        'Digest realm="r", nonce="n1", algorithm=SHA3-512, qop="auth"',
        'Basic realm="r"',
        'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="n3", algorithm=MD5, qop="auth"',
    ]
    chosen = select_challenge(values)
    assert chosen is not None
    assert chosen.nonce == "n2"
    assert select_challenge(['Basic realm="x"']) is None


def test_only_unknown_qop_cannot_be_answered() -> None:
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n", qop="auth-conf"')
    with pytest.raises(DigestError):
        build_authorization(
            challenge, method="INVITE", uri="sip:a@b", username="u", password="p", nc=1, cnonce="c"
        )


def test_credentials_require_fields() -> None:
    with pytest.raises(DigestError):
        DigestCredentials.parse('Digest username="u", realm="r", nonce="n", uri="sip:a"')
    with pytest.raises(DigestError):  # qop without nc/cnonce
        DigestCredentials.parse(
            'Digest username="u", realm="r", nonce="n", uri="sip:a", response="0", qop=auth'
        )
    with pytest.raises(DigestError):
        DigestCredentials.parse(
            'Digest username="u", realm="r", nonce="n", uri="sip:a", response="0", qop=auth,'
            ' cnonce="c", nc=xyz'
        )


def test_digest_client_counts_nc_per_nonce() -> None:
    cnonces = iter(["c1", "c2", "c3"])
    client = DigestClient("alice", "pw", cnonce_factory=lambda: next(cnonces))
    first = DigestChallenge.parse('Digest realm="r", nonce="A", qop="auth"')
    second = DigestChallenge.parse('Digest realm="r", nonce="B", qop="auth"')
    h1 = DigestCredentials.parse(client.authorize(first, method="INVITE", uri="sip:x@r"))
    h2 = DigestCredentials.parse(client.authorize(first, method="BYE", uri="sip:x@r"))
    h3 = DigestCredentials.parse(client.authorize(second, method="INVITE", uri="sip:x@r"))
    assert (h1.nc, h2.nc, h3.nc) == (1, 2, 1)
    assert (h1.cnonce, h2.cnonce, h3.cnonce) == ("c1", "c2", "c3")


# ---- server side ----------------------------------------------------------------------------

PASSWORDS = {"alice": "wonderland", "bob": "builder"}
SECRET = b"0123456789abcdef0123456789abcdef"


def _counter_bytes() -> Callable[[int], bytes]:
    state = {"n": 0}

    def rand(n: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(n, "big")

    return rand


def make_verifier(
    *,
    algorithms: tuple[DigestAlgorithm, ...] = (DigestAlgorithm.SHA256, DigestAlgorithm.MD5),
    qop: tuple[str, ...] = ("auth",),
    max_tracked_nonces: int = 4096,
    random_bytes: Callable[[int], bytes] | None = None,
) -> DigestVerifier:
    return DigestVerifier(
        "conf.example.org",
        SECRET,
        algorithms=algorithms,
        qop=qop,
        max_tracked_nonces=max_tracked_nonces,
        random_bytes=random_bytes or _counter_bytes(),
    )


def answer(
    challenge_value: str,
    *,
    username: str = "alice",
    password: str = "wonderland",
    nc: int = 1,
    method: str = "INVITE",
    body: bytes = b"",
) -> DigestCredentials:
    challenge = DigestChallenge.parse(challenge_value)
    header = build_authorization(
        challenge,
        method=method,
        uri="sip:1000@conf.example.org",
        username=username,
        password=password,
        nc=nc,
        cnonce="deadbeef",
        body=body,
    )
    return DigestCredentials.parse(header)


def test_verifier_accepts_good_credentials_both_algorithms() -> None:
    verifier = make_verifier()
    values = verifier.challenges(now=100.0)
    assert [DigestChallenge.parse(v).algorithm for v in values] == [
        DigestAlgorithm.SHA256,
        DigestAlgorithm.MD5,
    ]
    assert len({DigestChallenge.parse(v).nonce for v in values}) == 1  # the client uses one
    for value in values:
        creds = answer(value)
        result = make_verifier().verify(  # stateless: any instance with the secret verifies
            creds, method="INVITE", password_lookup=PASSWORDS.get, now=101.0
        )
        assert result is VerifyResult.OK


def test_verifier_wrong_password_unknown_user_wrong_method() -> None:
    verifier = make_verifier()
    value = verifier.challenge(now=0.0)
    assert (
        verifier.verify(
            answer(value, password="nope"), method="INVITE", password_lookup=PASSWORDS.get, now=1
        )
        is VerifyResult.WRONG
    )
    assert (
        verifier.verify(
            answer(value, username="mallory"),
            method="INVITE",
            password_lookup=PASSWORDS.get,
            now=1,
        )
        is VerifyResult.UNKNOWN_USER
    )
    assert (
        verifier.verify(answer(value), method="BYE", password_lookup=PASSWORDS.get, now=1)
        is VerifyResult.WRONG
    )


def test_verifier_rejects_forged_or_foreign_nonce() -> None:
    verifier = make_verifier()
    forged = (
        'Digest realm="conf.example.org", qop="auth",'
        f' nonce="{"A" * 43}"'  # right length, not ours
    )
    assert (
        verifier.verify(answer(forged), method="INVITE", password_lookup=PASSWORDS.get, now=1)
        is VerifyResult.WRONG
    )
    other = DigestVerifier("conf.example.org", b"another secret")
    assert (
        verifier.verify(
            answer(other.challenge(0.0)), method="INVITE", password_lookup=PASSWORDS.get, now=1
        )
        is VerifyResult.WRONG
    )
    other_realm = DigestVerifier("elsewhere", SECRET)
    creds = answer(other_realm.challenge(0.0))
    assert (
        verifier.verify(creds, method="INVITE", password_lookup=PASSWORDS.get, now=1)
        is VerifyResult.WRONG
    )


def test_verifier_stale_after_max_age_and_after_clock_reset() -> None:
    verifier = make_verifier()
    creds = answer(verifier.challenge(now=1000.0))
    assert (
        verifier.verify(
            creds, method="INVITE", password_lookup=PASSWORDS.get, now=1301.0, max_age=300
        )
        is VerifyResult.STALE_NONCE
    )
    # after a restart the monotonic clock may be behind the nonce: stale, not wrong
    assert (
        verifier.verify(creds, method="INVITE", password_lookup=PASSWORDS.get, now=5.0)
        is VerifyResult.STALE_NONCE
    )
    # a restarted verifier with the same secret still accepts a fresh enough nonce
    restarted = make_verifier()
    assert (
        restarted.verify(creds, method="INVITE", password_lookup=PASSWORDS.get, now=1200.0)
        is VerifyResult.OK
    )
    # a stale nonce with a wrong password is wrong, not stale (RFC 7616 §3.3 stale)
    bad = answer(verifier.challenge(now=0.0), password="x")
    assert (
        verifier.verify(bad, method="INVITE", password_lookup=PASSWORDS.get, now=1000.0)
        is VerifyResult.WRONG
    )


def test_stale_challenge_flag() -> None:
    verifier = make_verifier()
    assert DigestChallenge.parse(verifier.challenge(0.0, stale=True)).stale
    assert not DigestChallenge.parse(verifier.challenge(0.0)).stale


def test_verifier_nonce_count_replay() -> None:
    verifier = make_verifier()
    value = verifier.challenge(now=0.0)
    lookup = PASSWORDS.get
    assert verifier.verify(answer(value, nc=1), method="INVITE", password_lookup=lookup, now=1) is (
        VerifyResult.OK
    )
    # replay of the same nc
    assert verifier.verify(answer(value, nc=1), method="INVITE", password_lookup=lookup, now=2) is (
        VerifyResult.STALE_NONCE
    )
    assert verifier.verify(answer(value, nc=3), method="INVITE", password_lookup=lookup, now=3) is (
        VerifyResult.OK
    )
    assert verifier.verify(answer(value, nc=2), method="INVITE", password_lookup=lookup, now=4) is (
        VerifyResult.STALE_NONCE
    )


def test_verifier_replay_table_is_bounded_without_replay_window() -> None:
    verifier = make_verifier(max_tracked_nonces=8, random_bytes=_counter_bytes())
    lookup = PASSWORDS.get
    first = answer(verifier.challenge(now=0.0))
    assert verifier.verify(first, method="INVITE", password_lookup=lookup, now=0.5) is (
        VerifyResult.OK
    )
    for i in range(1, 50):
        creds = answer(verifier.challenge(now=float(i)))
        assert verifier.verify(creds, method="INVITE", password_lookup=lookup, now=i + 0.5) is (
            VerifyResult.OK
        )
        assert verifier.tracked_nonces <= 8
    # the first nonce was evicted long ago: replaying it must not be accepted
    assert verifier.verify(first, method="INVITE", password_lookup=lookup, now=60.0) is (
        VerifyResult.STALE_NONCE
    )


def test_verifier_requires_qop_and_configured_algorithm() -> None:
    verifier = make_verifier(algorithms=(DigestAlgorithm.SHA256,))
    nonce = DigestChallenge.parse(verifier.challenge(0.0)).nonce
    md5 = f'Digest realm="conf.example.org", nonce="{nonce}", qop="auth", algorithm=MD5'
    assert verifier.verify(answer(md5), method="INVITE", password_lookup=PASSWORDS.get, now=1) is (
        VerifyResult.WRONG
    )
    no_qop = f'Digest realm="conf.example.org", nonce="{nonce}", algorithm=SHA-256'
    assert verifier.verify(
        answer(no_qop), method="INVITE", password_lookup=PASSWORDS.get, now=1
    ) is (VerifyResult.WRONG)


def test_verifier_auth_int_checks_body() -> None:
    verifier = make_verifier(qop=("auth-int",))
    value = verifier.challenge(0.0)
    creds = answer(value, body=b"v=0\r\n")
    lookup = PASSWORDS.get
    wrong = verifier.verify(creds, method="INVITE", password_lookup=lookup, now=1, body=b"v=1")
    assert wrong is VerifyResult.WRONG
    good = verifier.verify(creds, method="INVITE", password_lookup=lookup, now=1, body=b"v=0\r\n")
    assert good is VerifyResult.OK


# ---- fuzz -----------------------------------------------------------------------------------

_AUTHISH = st.text(
    alphabet=st.sampled_from(list('Digest realm nonce="qop,auth-int algorithm=MD5\\ \t\x00é=,"')),
    max_size=120,
)


@given(st.one_of(st.text(max_size=300), _AUTHISH, _AUTHISH.map(lambda s: "Digest " + s)))
def test_challenge_parse_total(value: str) -> None:
    try:
        challenge = DigestChallenge.parse(value)
    except DigestError:
        return
    assert DigestChallenge.parse(str(challenge)) == challenge


@given(st.one_of(st.text(max_size=300), _AUTHISH.map(lambda s: "Digest " + s)))
def test_credentials_parse_total(value: str) -> None:
    try:
        creds = DigestCredentials.parse(value)
    except DigestError:
        return
    assert DigestCredentials.parse(str(creds)) == creds
