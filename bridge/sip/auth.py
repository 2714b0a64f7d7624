"""SIP digest authentication: RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760.

Client side (UAC answering a 401/407):

* :meth:`DigestChallenge.parse` reads one ``WWW-Authenticate`` / ``Proxy-Authenticate`` value.
* :func:`select_challenge` picks, among several header values, the first one we support
  (RFC 8760 §2.4: the UAS lists its challenges most preferred first).
* :func:`build_authorization` produces the ``Authorization`` / ``Proxy-Authorization`` value.
  The digest ``uri`` is the Request-URI string (RFC 3261 §22.4); qop ``auth`` is preferred when
  offered, ``auth-int`` is used when it is the only one, and a challenge without ``qop`` gets an
  RFC 2069-style answer.
* :class:`DigestClient` keeps the nonce-count per nonce (RFC 7616 §3.4) for a UA core.

Server side (UAS challenging a request):

* :meth:`DigestCredentials.parse` reads an ``Authorization`` / ``Proxy-Authorization`` value.
* :class:`DigestVerifier` issues stateless nonces (timestamp + salt + HMAC-SHA-256 with a secret,
  RFC 7616 §3.3 suggests a time stamp and a private key) and verifies credentials, with bounded
  nonce-count replay protection.

This module reads no clock: every call that needs the time takes ``now`` (monotonic seconds).

Grammar implemented (RFC 3261 §25.1, RFC 7616 §3.3-3.4, lenient where real peers are)::

    challenge   = "Digest" LWS digest-cln *(COMMA digest-cln)
    digest-cln  = realm / domain / nonce / opaque / stale / algorithm / qop-options / auth-param
    auth-param  = auth-param-name EQUAL ( token / quoted-string )

Unquoted values (``algorithm=MD5``, ``qop=auth``, ``nc=00000001``) and quoted ones
(``algorithm="MD5"``) are both accepted wherever they occur; algorithm names compare
case-insensitively (PJSIP-based Asterisk sends ``algorithm=md5``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "AUTH_HEADERS",
    "DigestAlgorithm",
    "DigestChallenge",
    "DigestClient",
    "DigestCredentials",
    "DigestError",
    "DigestVerifier",
    "UnsupportedAlgorithmError",
    "VerifyResult",
    "build_authorization",
    "digest_response",
    "make_cnonce",
    "select_challenge",
]

#: Longest header value we look at; real challenges are a few hundred characters.
MAX_HEADER_LENGTH = 8192

#: 401 -> (challenge header, credentials header); 407 -> the proxy pair (RFC 3261 §22.2, §22.3).
AUTH_HEADERS: dict[int, tuple[str, str]] = {
    401: ("WWW-Authenticate", "Authorization"),
    407: ("Proxy-Authenticate", "Proxy-Authorization"),
}


class DigestError(ValueError):
    """The one error type of this module. ``status`` is the answer a UAS gives to a request
    whose credentials cannot be read (400 Bad Request)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class UnsupportedAlgorithmError(DigestError):
    """The challenge or credentials name an algorithm we do not implement. RFC 7616 §3.3: such a
    challenge is ignored (use another one if there is one)."""


class DigestAlgorithm(Enum):
    """Algorithms of the IANA "HTTP Digest Hash Algorithms" registry that SIP uses (RFC 8760 §2)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA256 = "SHA-256"
    SHA256_SESS = "SHA-256-sess"
    SHA512_256 = "SHA-512-256"
    SHA512_256_SESS = "SHA-512-256-sess"

    @classmethod
    def parse(cls, text: str) -> DigestAlgorithm:
        """Case-insensitive lookup; raise :class:`UnsupportedAlgorithmError` for anything else."""
        found = _ALGORITHMS_BY_LOWER.get(text.lower())
        if found is None:
            raise UnsupportedAlgorithmError(f"unsupported digest algorithm {text!r}")
        return found

    @property
    def is_session(self) -> bool:
        """True for the ``-sess`` variants (RFC 7616 §3.4.2)."""
        return self.value.endswith("-sess")

    def hash_hex(self, data: bytes) -> str:
        """H(data) of RFC 7616 §3.4.1 as lower-case hex."""
        name = _HASHLIB_NAMES[self]
        return hashlib.new(name, data).hexdigest()


_ALGORITHMS_BY_LOWER = {alg.value.lower(): alg for alg in DigestAlgorithm}
_HASHLIB_NAMES = {
    DigestAlgorithm.MD5: "md5",
    DigestAlgorithm.MD5_SESS: "md5",
    DigestAlgorithm.SHA256: "sha256",
    DigestAlgorithm.SHA256_SESS: "sha256",
    DigestAlgorithm.SHA512_256: "sha512_256",
    DigestAlgorithm.SHA512_256_SESS: "sha512_256",
}


# --------------------------------------------------------------------------------------------
# auth-param list parsing (shared by challenges and credentials)

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
_WS = " \t"
_HEX = frozenset("0123456789abcdefABCDEF")
# An unquoted value: be lenient (some servers send base64 nonces unquoted), stop at ws/comma.
_UNQUOTED_STOP = frozenset(' \t,"')


def _parse_auth_params(header_value: str) -> tuple[str, dict[str, str]]:
    """Split ``Scheme name=value, name="value"`` into the scheme and a dict with lower-cased
    names and unquoted values. Raise :class:`DigestError` on malformed input."""
    if len(header_value) > MAX_HEADER_LENGTH:
        raise DigestError("authentication header too long")
    for ch in header_value:
        code = ord(ch)
        if (code < 0x20 and ch != "\t") or code == 0x7F:
            raise DigestError("control character in authentication header")
    text = header_value.strip(_WS)
    length = len(text)
    pos = 0
    while pos < length and text[pos] in _TOKEN_CHARS:
        pos += 1
    scheme = text[:pos]
    if not scheme:
        raise DigestError("missing authentication scheme")
    if pos < length and text[pos] not in _WS:
        raise DigestError("malformed authentication scheme")
    params: dict[str, str] = {}
    while True:
        # skip LWS and empty list elements ("#rule" allows null elements)
        while pos < length and (text[pos] in _WS or text[pos] == ","):
            pos += 1
        if pos >= length:
            break
        start = pos
        while pos < length and text[pos] in _TOKEN_CHARS:
            pos += 1
        name = text[start:pos].lower()
        if not name:
            raise DigestError(f"expected a parameter name at offset {start}")
        while pos < length and text[pos] in _WS:
            pos += 1
        if pos >= length or text[pos] != "=":
            raise DigestError(f"parameter {name!r} has no value")
        pos += 1
        while pos < length and text[pos] in _WS:
            pos += 1
        if pos < length and text[pos] == '"':
            pos += 1
            chars: list[str] = []
            while True:
                if pos >= length:
                    raise DigestError(f"unterminated quoted string for {name!r}")
                ch = text[pos]
                if ch == "\\":
                    if pos + 1 >= length:
                        raise DigestError("dangling escape in quoted string")
                    chars.append(text[pos + 1])
                    pos += 2
                elif ch == '"':
                    pos += 1
                    break
                else:
                    chars.append(ch)
                    pos += 1
            value = "".join(chars)
        else:
            start = pos
            while pos < length and text[pos] not in _UNQUOTED_STOP:
                pos += 1
            value = text[start:pos]
            if not value:
                raise DigestError(f"parameter {name!r} has an empty value")
        if name in params:
            raise DigestError(f"duplicate parameter {name!r}")
        params[name] = value
        while pos < length and text[pos] in _WS:
            pos += 1
        if pos < length and text[pos] != ",":
            raise DigestError(f"expected ',' after parameter {name!r}")
    return scheme, params


def _quote(value: str) -> str:
    """quoted-string of RFC 3261 §25.1 (escape backslash and double quote)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_digest_scheme(scheme: str) -> None:
    if scheme.lower() != "digest":
        raise DigestError(f"authentication scheme {scheme!r} is not Digest")


def _split_qop(value: str) -> tuple[str, ...]:
    return tuple(item.strip(_WS).lower() for item in value.split(",") if item.strip(_WS))


# --------------------------------------------------------------------------------------------
# challenges (WWW-Authenticate / Proxy-Authenticate)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestChallenge:
    """One ``Digest`` challenge (RFC 7616 §3.3, RFC 3261 §20.44). ``userhash`` and other
    extension parameters are ignored."""

    realm: str
    nonce: str
    opaque: str | None = None
    algorithm: DigestAlgorithm = DigestAlgorithm.MD5
    qop: tuple[str, ...] = ()  # lower-cased tokens, e.g. ("auth", "auth-int"); () = RFC 2069
    stale: bool = False
    domain: str | None = None

    @classmethod
    def parse(cls, header_value: str) -> DigestChallenge:
        """Parse a WWW-Authenticate / Proxy-Authenticate value. Raise :class:`DigestError`
        (or its subclass :class:`UnsupportedAlgorithmError`) when it is not a usable challenge."""
        scheme, params = _parse_auth_params(header_value)
        _check_digest_scheme(scheme)
        realm = params.get("realm")
        nonce = params.get("nonce")
        if realm is None:
            raise DigestError("challenge without realm")
        if nonce is None:
            raise DigestError("challenge without nonce")
        algorithm_text = params.get("algorithm")
        algorithm = (
            DigestAlgorithm.MD5
            if algorithm_text is None
            else DigestAlgorithm.parse(algorithm_text)
        )
        return cls(
            realm=realm,
            nonce=nonce,
            opaque=params.get("opaque"),
            algorithm=algorithm,
            qop=_split_qop(params.get("qop", "")),
            stale=params.get("stale", "").lower() == "true",
            domain=params.get("domain"),
        )

    def __str__(self) -> str:
        """The header value, in the usual order (realm, nonce, opaque, algorithm, qop, stale)."""
        parts = [f"realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        parts.append(f"algorithm={self.algorithm.value}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        if self.stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)


def select_challenge(header_values: Iterable[str]) -> DigestChallenge | None:
    """The first challenge we can answer, in header order (RFC 8760 §2.4: the UAS puts its most
    preferred algorithm first; challenges with unknown algorithms or schemes are skipped).
    Return None when no value is usable."""
    for value in header_values:
        try:
            return DigestChallenge.parse(value)
        except DigestError:
            continue
    return None


# --------------------------------------------------------------------------------------------
# credentials (Authorization / Proxy-Authorization)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestCredentials:
    """Digest credentials (RFC 7616 §3.4, RFC 3261 §20.7). ``nc`` is the nonce-count as an int."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: DigestAlgorithm = DigestAlgorithm.MD5
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None  # "auth" | "auth-int" | None (RFC 2069 style)
    nc: int | None = None

    @classmethod
    def parse(cls, header_value: str) -> DigestCredentials:
        """Parse an Authorization / Proxy-Authorization value; raise :class:`DigestError`."""
        scheme, params = _parse_auth_params(header_value)
        _check_digest_scheme(scheme)
        required: dict[str, str] = {}
        for name in ("username", "realm", "nonce", "uri", "response"):
            value = params.get(name)
            if value is None:
                raise DigestError(f"credentials without {name}")
            required[name] = value
        algorithm_text = params.get("algorithm")
        algorithm = (
            DigestAlgorithm.MD5
            if algorithm_text is None
            else DigestAlgorithm.parse(algorithm_text)
        )
        qop_text = params.get("qop")
        qop = None if qop_text is None else qop_text.strip(_WS).lower()
        nc: int | None = None
        nc_text = params.get("nc")
        if nc_text is not None:
            if not 1 <= len(nc_text) <= 8 or any(c not in _HEX for c in nc_text):
                raise DigestError("nonce-count is not 8LHEX")
            nc = int(nc_text, 16)
        cnonce = params.get("cnonce")
        if qop is not None:
            if qop not in ("auth", "auth-int"):
                raise DigestError(f"unknown qop {qop!r}")
            if cnonce is None or nc is None:
                raise DigestError("qop given without cnonce and nc")
        return cls(
            username=required["username"],
            realm=required["realm"],
            nonce=required["nonce"],
            uri=required["uri"],
            response=required["response"],
            algorithm=algorithm,
            cnonce=cnonce,
            opaque=params.get("opaque"),
            qop=qop,
            nc=nc,
        )

    def __str__(self) -> str:
        """The header value (RFC 7616 §3.4: qop and nc unquoted, algorithm as a token)."""
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={self.algorithm.value}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc:08x}")
        return "Digest " + ", ".join(parts)


# --------------------------------------------------------------------------------------------
# the computation


def digest_response(
    algorithm: DigestAlgorithm,
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: int | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1-3.4.3, RFC 2617 §3.2.2.1, RFC 2069 without qop).

    A1 = username:realm:password, for -sess H(A1):nonce:cnonce. A2 = method:uri, for auth-int
    method:uri:H(body). response = KD(H(A1), nonce:nc:cnonce:qop:H(A2)), or H(H(A1):nonce:H(A2))
    when qop is None. Strings are UTF-8 encoded.
    """
    ha1 = algorithm.hash_hex(f"{username}:{realm}:{password}".encode())
    if algorithm.is_session:
        if cnonce is None:
            raise DigestError("-sess algorithm needs a cnonce")
        ha1 = algorithm.hash_hex(f"{ha1}:{nonce}:{cnonce}".encode())
    if qop == "auth-int":
        a2 = f"{method}:{uri}:{algorithm.hash_hex(body)}"
    elif qop in (None, "auth"):
        a2 = f"{method}:{uri}"
    else:
        raise DigestError(f"unknown qop {qop!r}")
    ha2 = algorithm.hash_hex(a2.encode())
    if qop is None:
        return algorithm.hash_hex(f"{ha1}:{nonce}:{ha2}".encode())
    if nc is None or cnonce is None:
        raise DigestError("qop needs nc and cnonce")
    if not 0 < nc <= 0xFFFFFFFF:
        raise DigestError("nonce-count out of range")
    return algorithm.hash_hex(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}".encode())


def _choose_qop(offered: tuple[str, ...]) -> str | None:
    if not offered:
        return None
    if "auth" in offered:
        return "auth"
    if "auth-int" in offered:
        return "auth-int"
    raise DigestError(f"no supported qop among {offered!r}")


def build_authorization(
    challenge: DigestChallenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int,
    cnonce: str,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization header value answering ``challenge``.

    ``uri`` is the Request-URI string of the request being authorised (RFC 3261 §22.4) and
    ``body`` its message body (used only for qop=auth-int). ``nc`` (1-based) and ``cnonce`` are
    omitted from the header for an RFC 2069-style challenge without qop, unless the algorithm is
    a -sess one. Raise :class:`DigestError` when the challenge offers only unknown qop values.
    """
    qop = _choose_qop(challenge.qop)
    response = digest_response(
        challenge.algorithm,
        username=username,
        realm=challenge.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        body=body,
    )
    send_cnonce = qop is not None or challenge.algorithm.is_session
    credentials = DigestCredentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        cnonce=cnonce if send_cnonce else None,
        opaque=challenge.opaque,
        qop=qop,
        nc=nc if qop is not None else None,
    )
    return str(credentials)


def make_cnonce() -> str:
    """A fresh client nonce: 16 random hex characters (RFC 7616 §3.4: unguessable)."""
    return secrets.token_hex(8)


class DigestClient:
    """Client-side digest state for one account, as a UA core uses it on 401/407.

    Remembers the nonce-count per nonce (RFC 7616 §3.4: nc counts the requests sent with one
    nonce, starting at 1) so that a later request reusing a challenge sends nc=2, 3 ...
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        cnonce_factory: Callable[[], str] = make_cnonce,
        max_nonces: int = 64,
    ) -> None:
        self.username = username
        self._password = password
        self._cnonce_factory = cnonce_factory
        self._max_nonces = max_nonces
        self._nc: OrderedDict[str, int] = OrderedDict()

    def authorize(
        self, challenge: DigestChallenge, *, method: str, uri: str, body: bytes = b""
    ) -> str:
        """Authorization value for a request answering ``challenge`` (next nc for its nonce)."""
        nc = self._nc.pop(challenge.nonce, 0) + 1
        self._nc[challenge.nonce] = nc
        while len(self._nc) > self._max_nonces:
            self._nc.popitem(last=False)
        return build_authorization(
            challenge,
            method=method,
            uri=uri,
            username=self.username,
            password=self._password,
            nc=nc,
            cnonce=self._cnonce_factory(),
            body=body,
        )


# --------------------------------------------------------------------------------------------
# server side


class VerifyResult(Enum):
    """Outcome of :meth:`DigestVerifier.verify`.

    OK: authenticated. STALE_NONCE: the digest is right but the nonce expired, was issued before
    a clock reset, or its nonce-count was already used: re-challenge with ``stale=True`` (a real
    client retries silently; a replaying attacker cannot). WRONG: bad response, realm, nonce,
    algorithm or qop. UNKNOWN_USER: no such user. Answer WRONG and UNKNOWN_USER the same way
    (401/407 with a fresh challenge) so usernames cannot be probed.
    """

    OK = "ok"
    STALE_NONCE = "stale-nonce"
    WRONG = "wrong"
    UNKNOWN_USER = "unknown-user"


_NONCE_TS = struct.Struct(">q")  # milliseconds of the `now` clock
_SALT_LEN = 8
_MAC_LEN = 16
_NONCE_LEN = _NONCE_TS.size + _SALT_LEN + _MAC_LEN


class DigestVerifier:
    """Issue stateless nonces and verify digest credentials for one realm (RFC 7616 §3.3, §5.4).

    nonce = base64url(ts_ms || salt || HMAC-SHA-256(secret, realm || ts_ms || salt)[:16]). The
    server keeps no state per challenge, so restarting with the same secret invalidates nothing
    (a nonce from before a monotonic-clock reset is answered as stale). Nonce-count replay
    protection keeps the last nc of at most ``max_tracked_nonces`` nonces; when an entry must be
    evicted, every untracked nonce not newer than it is treated as stale, so eviction never
    opens a replay window.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        algorithms: Sequence[DigestAlgorithm] = (DigestAlgorithm.SHA256, DigestAlgorithm.MD5),
        qop: Sequence[str] = ("auth",),
        max_tracked_nonces: int = 4096,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if not secret:
            raise ValueError("DigestVerifier needs a non-empty secret")
        if not algorithms:
            raise ValueError("DigestVerifier needs at least one algorithm")
        self.realm = realm
        self._secret = secret
        self.algorithms = tuple(algorithms)
        self.qop = tuple(q.lower() for q in qop)
        self._max_tracked = max(1, max_tracked_nonces)
        self._random_bytes = random_bytes
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()  # nonce -> (last nc, ts_ms)
        self._floor_ms: int | None = None  # untracked nonces with ts <= this are stale

    # -- nonces

    def _mac(self, ts_and_salt: bytes) -> bytes:
        msg = self.realm.encode() + b"\x00" + ts_and_salt
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:_MAC_LEN]

    def make_nonce(self, now: float) -> str:
        """A fresh nonce stamped with ``now``."""
        head = _NONCE_TS.pack(round(now * 1000)) + self._random_bytes(_SALT_LEN)
        return base64.urlsafe_b64encode(head + self._mac(head)).rstrip(b"=").decode("ascii")

    def _nonce_time_ms(self, nonce: str) -> int | None:
        """The timestamp of a nonce we issued, or None if it is not ours."""
        if len(nonce) != 43:  # base64 of 32 bytes without padding
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_LEN:
            return None
        head, mac = raw[: -_MAC_LEN], raw[-_MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        (ts_ms,) = _NONCE_TS.unpack_from(head)
        return int(ts_ms)

    def challenge(
        self, now: float, stale: bool = False, *, algorithm: DigestAlgorithm | None = None
    ) -> str:
        """One WWW-Authenticate / Proxy-Authenticate value with a fresh nonce, for ``algorithm``
        (default: the first configured one)."""
        chosen = self.algorithms[0] if algorithm is None else algorithm
        return str(
            DigestChallenge(
                realm=self.realm,
                nonce=self.make_nonce(now),
                algorithm=chosen,
                qop=self.qop,
                stale=stale,
            )
        )

    def challenges(self, now: float, stale: bool = False) -> list[str]:
        """One header value per configured algorithm, most preferred first (RFC 8760 §2.4)."""
        nonce = self.make_nonce(now)
        return [
            str(
                DigestChallenge(
                    realm=self.realm, nonce=nonce, algorithm=alg, qop=self.qop, stale=stale
                )
            )
            for alg in self.algorithms
        ]

    # -- verification

    def verify(
        self,
        credentials: DigestCredentials,
        *,
        method: str,
        password_lookup: Callable[[str], str | None],
        now: float,
        max_age: float = 300.0,
        body: bytes = b"",
    ) -> VerifyResult:
        """Check ``credentials`` sent with a request of ``method`` (and ``body`` for auth-int).

        The digest is computed over the ``uri`` the client sent (RFC 3261 §22.4); a caller that
        wants to can compare ``credentials.uri`` with the Request-URI itself.
        """
        if credentials.realm != self.realm:
            return VerifyResult.WRONG
        if credentials.algorithm not in self.algorithms:
            return VerifyResult.WRONG
        if credentials.qop is None or credentials.qop not in self.qop:
            return VerifyResult.WRONG
        if credentials.nc is None or credentials.cnonce is None:
            return VerifyResult.WRONG
        ts_ms = self._nonce_time_ms(credentials.nonce)
        if ts_ms is None:
            return VerifyResult.WRONG
        password = password_lookup(credentials.username)
        if password is None:
            return VerifyResult.UNKNOWN_USER
        try:
            expected = digest_response(
                credentials.algorithm,
                username=credentials.username,
                realm=self.realm,
                password=password,
                method=method,
                uri=credentials.uri,
                nonce=credentials.nonce,
                qop=credentials.qop,
                nc=credentials.nc,
                cnonce=credentials.cnonce,
                body=body,
            )
        except DigestError:
            return VerifyResult.WRONG
        if not hmac.compare_digest(expected.encode(), credentials.response.lower().encode()):
            return VerifyResult.WRONG
        now_ms = round(now * 1000)
        age_ms = now_ms - ts_ms
        if age_ms < 0 or age_ms > max_age * 1000:
            return VerifyResult.STALE_NONCE
        return self._check_nonce_count(credentials.nonce, credentials.nc, ts_ms, now_ms, max_age)

    def _check_nonce_count(
        self, nonce: str, nc: int, ts_ms: int, now_ms: int, max_age: float
    ) -> VerifyResult:
        """Replay protection: nc must grow for each use of one nonce (RFC 7616 §3.4, §5.4)."""
        seen = self._seen.get(nonce)
        if seen is None:
            if self._floor_ms is not None and ts_ms <= self._floor_ms:
                return VerifyResult.STALE_NONCE
            self._make_room(now_ms, max_age)
            self._seen[nonce] = (nc, ts_ms)
            return VerifyResult.OK
        last_nc, _ = seen
        if nc <= last_nc:
            return VerifyResult.STALE_NONCE
        self._seen[nonce] = (nc, ts_ms)
        return VerifyResult.OK

    def _make_room(self, now_ms: int, max_age: float) -> None:
        if len(self._seen) < self._max_tracked:
            return
        oldest_valid = now_ms - max_age * 1000
        expired = [(k, ts) for k, (_, ts) in self._seen.items() if ts < oldest_valid]
        for key, ts in expired:  # expired nonces are answered stale by their age anyway
            del self._seen[key]
            self._floor_ms = ts if self._floor_ms is None else max(self._floor_ms, ts)
        while len(self._seen) >= self._max_tracked:
            _, (_, ts) = self._seen.popitem(last=False)
            self._floor_ms = ts if self._floor_ms is None else max(self._floor_ms, ts)

    @property
    def tracked_nonces(self) -> int:
        """How many nonces the replay table holds (bounded by ``max_tracked_nonces``)."""
        return len(self._seen)
