"""The one error type of the SIP parser, in a module of its own so that the message model
(``bridge.sip.message``) and the typed header values (``bridge.sip.headers``,
``bridge.sip.uri``) can all use it without importing each other in a circle."""

from __future__ import annotations


class SipParseError(ValueError):
    """The one error type of the SIP parser. ``status`` is the response a UAS should send
    (400 Bad Request, 505 Version Not Supported, 513 Message Too Large, 416 Unsupported URI
    Scheme ...) when the message can be answered at all."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
