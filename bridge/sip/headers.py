"""Typed header values: Via, name-addr (From/To/Contact/Route), CSeq. Contract only."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.sip.uri import SipUri


@dataclass(slots=True)
class Via:
    transport: str = "UDP"  # upper-cased
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # keys lower-cased

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @classmethod
    def parse(cls, text: str) -> Via:
        raise NotImplementedError

    def __str__(self) -> str:
        raise NotImplementedError


@dataclass(slots=True)
class NameAddr:
    uri: SipUri
    display_name: str | None = None  # unquoted
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        raise NotImplementedError

    def __str__(self) -> str:
        raise NotImplementedError


@dataclass(slots=True, frozen=True)
class CSeq:
    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"
