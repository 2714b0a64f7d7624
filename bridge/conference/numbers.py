"""Access numbers: E.164 normalisation (ITU-T E.164, RFC 3966) and country codes (ISO 3166-1).

* ``normalize_e164("+49 (30) 1234-5678") == "+493012345678"``: visual separators
  (space, ``-``, ``.``, ``(``, ``)``, ``/``; RFC 3966 §5.1.1 ``visual-separator``) are dropped,
  the ``00`` international prefix becomes ``+``, a bracketed trunk prefix after the country
  code (``+49 (0)30``) is dropped, and with a ``default_country`` a national number
  (trunk prefix ``0``, or 10 NANP digits for US/CA) is made international.
* ``normalize_request_user("sip:+49301234@gw;user=phone")`` and the ``tel:`` forms, including a
  local number with a global ``;phone-context=+49...`` (RFC 3966 §5.1.5), give the E.164 number a
  call was made to.
* ``validate_country("de") == "DE"`` (ISO 3166-1 alpha-2).

Anything else raises ``NumberError`` with a message fit to show to an operator.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = [
    "CALLING_CODES",
    "ISO_COUNTRIES",
    "NumberError",
    "country_of",
    "normalize_e164",
    "normalize_request_user",
    "validate_country",
]

#: ITU-T E.164 §6: at most 15 digits after the '+'. Seven is the shortest real number we accept.
MAX_DIGITS = 15
MIN_DIGITS = 7

_SEPARATORS = str.maketrans("", "", " \t-.()/\u00a0")
_TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")
_E164 = re.compile(rf"\+[1-9][0-9]{{{MIN_DIGITS - 1},{MAX_DIGITS - 1}}}")

#: ISO 3166-1 alpha-2 officially assigned codes.
_ISO_3166_ALPHA2 = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
"""
ISO_COUNTRIES: frozenset[str] = frozenset(_ISO_3166_ALPHA2.split())

#: Country calling codes (ITU-T E.164 assignments) of the countries we sell access numbers in
#: and their neighbours. Used to check that an access number belongs to its country.
CALLING_CODES: dict[str, str] = {
    "AT": "43",
    "BE": "32",
    "CA": "1",
    "CH": "41",
    "CZ": "420",
    "DE": "49",
    "DK": "45",
    "ES": "34",
    "FR": "33",
    "GB": "44",
    "IE": "353",
    "IT": "39",
    "LI": "423",
    "LU": "352",
    "NL": "31",
    "NO": "47",
    "PL": "48",
    "PT": "351",
    "SE": "46",
    "US": "1",
}

#: Countries of the North American Numbering Plan (10-digit national numbers, no trunk '0').
_NANP = frozenset({"US", "CA"})


class NumberError(ValueError):
    """A number, URI user or country code that cannot be used (message says why)."""


def validate_country(code: str) -> str:
    """Return the upper-case ISO 3166-1 alpha-2 code, or raise ``NumberError``."""
    cc = code.strip().upper()
    if len(cc) != 2 or not cc.isascii() or not cc.isalpha():
        raise NumberError(f"country code must be two letters (ISO 3166-1 alpha-2), got {code!r}")
    if cc not in ISO_COUNTRIES:
        raise NumberError(f"unknown country code {cc!r} (ISO 3166-1 alpha-2)")
    return cc


def normalize_e164(raw: str, default_country: str | None = None) -> str:
    """Normalise a dialable number to E.164 ``+<digits>``.

    ``default_country`` lets national formats through: ``030 1234567`` with ``DE`` gives
    ``+49301234567``; ``(212) 555-0100`` with ``US`` gives ``+12125550100``.
    """
    text = raw.strip()
    if not text:
        raise NumberError("empty number")
    if text.startswith(("+", "00")):
        # "+49 (0)30 ...": the bracketed national trunk prefix is not part of the number
        text = _TRUNK_ZERO.sub("", text)
    digits = text.translate(_SEPARATORS)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif not digits.startswith("+") and default_country is not None:
        digits = _national_to_international(digits, validate_country(default_country), raw)
    if not digits.startswith("+"):
        raise NumberError(f"{raw!r} is not international: start with + or 00 and the country code")
    body = digits[1:]
    if not body.isascii() or not body.isdigit():
        raise NumberError(f"{raw!r} contains characters other than digits and separators")
    if not _E164.fullmatch(digits):
        if body.startswith("0"):
            raise NumberError(f"{raw!r}: a country code never starts with 0")
        raise NumberError(
            f"{raw!r}: an E.164 number has {MIN_DIGITS} to {MAX_DIGITS} digits, got {len(body)}"
        )
    return digits


def _national_to_international(digits: str, country: str, raw: str) -> str:
    code = CALLING_CODES.get(country)
    if code is None:
        raise NumberError(f"no national numbering rules for {country}; give {raw!r} with +")
    if country in _NANP:
        if digits.startswith("1") and len(digits) == 11:
            digits = digits[1:]
        if len(digits) != 10:
            raise NumberError(f"{raw!r}: a national {country} number has 10 digits")
        return "+1" + digits
    if not digits.startswith("0") or digits.startswith("00"):
        raise NumberError(f"{raw!r}: a national {country} number starts with one 0")
    return "+" + code + digits[1:]


def country_of(number: str) -> str | None:
    """The country of an E.164 number among ``CALLING_CODES`` (US for +1), or None."""
    best: str | None = None
    best_len = 0
    for country, code in sorted(CALLING_CODES.items()):
        if number.startswith("+" + code) and len(code) > best_len:
            best, best_len = country, len(code)
    if best == "CA":  # +1 is shared; the NANP area code would decide, we report US
        return "US"
    return best


def normalize_request_user(uri: str, default_country: str | None = None) -> str:
    """E.164 number from a Request-URI (or its bare user part).

    Accepts ``sip:``/``sips:`` URIs whose user is a number (RFC 3261 §19.1.6, ``user=phone``),
    ``tel:`` URIs (RFC 3966), and bare users. A local number needs a global
    ``phone-context`` (``tel:1234;phone-context=+4930`` -> ``+49301234``); a domain-name
    context cannot be made global and is rejected.
    """
    text = uri.strip()
    lower = text.lower()
    if lower.startswith(("sip:", "sips:")):
        rest = text.split(":", 1)[1]
        if "@" not in rest:
            raise NumberError(f"{uri!r}: SIP URI has no user part")
        user = rest.rsplit("@", 1)[0]
    elif lower.startswith("tel:"):
        user = text[4:]
    elif ":" in text.split(";", 1)[0]:
        raise NumberError(f"{uri!r}: only sip:, sips: and tel: URIs carry a number")
    else:
        user = text.split("@", 1)[0]
    user = unquote(user)
    number, _, params = user.partition(";")
    context: str | None = None
    for param in params.split(";") if params else []:
        name, _, value = param.partition("=")
        if name.strip().lower() == "phone-context":
            context = value.strip()
    number = number.strip()
    if not number:
        raise NumberError(f"{uri!r}: empty number")
    if number.startswith("+") or number.translate(_SEPARATORS).startswith("00"):
        return normalize_e164(number)
    if context is not None:
        if not context.startswith("+"):
            raise NumberError(
                f"{uri!r}: local number in domain context {context!r} has no E.164 form"
            )
        prefix = normalize_e164_prefix(context, uri)
        return normalize_e164(prefix + number.translate(_SEPARATORS))
    return normalize_e164(number, default_country)


def normalize_e164_prefix(context: str, uri: str) -> str:
    """A global-number-digits phone-context (RFC 3966 §5.1.5), separators removed."""
    prefix = context.translate(_SEPARATORS)
    if not prefix[1:].isascii() or not prefix[1:].isdigit() or not prefix[1:2].strip("0"):
        raise NumberError(f"{uri!r}: bad phone-context {context!r}")
    return prefix
