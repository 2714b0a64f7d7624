"""SIP/SIPS/tel URIs (RFC 3261 §19.1, §25.1; RFC 3966). Contract only; the parser helper fills it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SipUri:
    scheme: str = "sip"  # "sip", "sips" or "tel", lower-cased
    user: str | None = None  # unescaped user part (or the tel number)
    password: str | None = None
    host: str = ""  # hostname, IPv4, or IPv6 reference WITH brackets ("[::1]")
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # keys lower-cased
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; raise SipParseError (status 416 for a scheme that is not sip/sips/tel,
        400 for bad syntax)."""
        raise NotImplementedError

    def __str__(self) -> str:
        raise NotImplementedError
