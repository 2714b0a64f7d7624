"""Serial-number arithmetic (RFC 1982) and RTP source validation (RFC 3550 Appendix A.1).

RTP sequence numbers are 16-bit and timestamps 32-bit serial numbers: they wrap, so "later" is
defined by RFC 1982 §3.2 (``a < b`` iff the forward distance from ``a`` to ``b`` is below half
the space). RFC 1982 leaves the exact half-way distance undefined; here it counts as negative,
so :func:`seq_diff` returns a value in ``[-32768, 32767]``.

:class:`SourceValidator` is the ``update_seq`` algorithm of RFC 3550 A.1: a source is valid after
``min_sequential`` in-order packets; a forward jump below ``max_dropout`` is accepted; a packet
within ``max_misorder`` behind is a duplicate/reordered packet; any other jump is rejected unless
the next packet follows it (the sender restarted), which re-initialises the state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "RTP_SEQ_MOD",
    "SeqConfig",
    "SeqVerdict",
    "SourceValidator",
    "seq_diff",
    "seq_lt",
    "ts_diff",
    "ts_lt",
]

RTP_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` of two 16-bit sequence numbers (RFC 1982), in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_lt(a: int, b: int) -> bool:
    """RFC 1982 ``a < b`` for 16-bit sequence numbers."""
    return seq_diff(a, b) < 0


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` of two 32-bit RTP timestamps (RFC 1982)."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def ts_lt(a: int, b: int) -> bool:
    """RFC 1982 ``a < b`` for 32-bit timestamps."""
    return ts_diff(a, b) < 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SeqConfig:
    """Tuning of RFC 3550 A.1 (defaults are the RFC's)."""

    min_sequential: int = 2
    max_dropout: int = 3000
    max_misorder: int = 100

    def __post_init__(self) -> None:
        if self.max_dropout < 2:
            raise ValueError("max_dropout must be at least 2 (the next packet is in order)")


class SeqVerdict(enum.Enum):
    """Outcome of :meth:`SourceValidator.update` for one packet."""

    PROBATION = "probation"  # source not yet valid: discard (A.1 returns 0)
    VALID = "valid"  # in order, possibly after a permissible gap
    MISORDERED = "misordered"  # duplicate or reordered, behind the highest seq (still valid)
    JUMPED = "jumped"  # very large jump, awaiting confirmation: discard (A.1 returns 0)
    RESTARTED = "restarted"  # second sequential packet after a jump: state re-initialised

    @property
    def accepted(self) -> bool:
        """Whether RFC 3550 A.1 deems the packet valid."""
        return self is not SeqVerdict.PROBATION and self is not SeqVerdict.JUMPED


class SourceValidator:
    """RFC 3550 A.1 per-source sequence state (``source`` struct + ``init_seq``/``update_seq``).

    ``extended_max`` is the extended highest sequence number received (cycles + max_seq),
    as reported in RTCP report blocks (§6.4.1).
    """

    __slots__ = (
        "_config",
        "bad_seq",
        "base_seq",
        "cycles",
        "expected_prior",
        "max_seq",
        "probation",
        "received",
        "received_prior",
    )

    def __init__(self, first_seq: int, config: SeqConfig | None = None) -> None:
        self._config = config if config is not None else SeqConfig()
        self.base_seq = first_seq
        self.max_seq = (first_seq - 1) & 0xFFFF
        self.bad_seq = RTP_SEQ_MOD + 1  # so seq == bad_seq is false
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.probation = self._config.min_sequential

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    @property
    def extended_max(self) -> int:
        """Extended highest sequence number received (RFC 3550 §6.4.1)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since ``base_seq`` (RFC 3550 A.3)."""
        return self.extended_max - self.base_seq + 1

    def update(self, seq: int) -> SeqVerdict:
        """Feed one packet's sequence number (RFC 3550 A.1 ``update_seq``)."""
        cfg = self._config
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return SeqVerdict.VALID
            else:
                self.probation = cfg.min_sequential - 1
                self.max_seq = seq
            return SeqVerdict.PROBATION
        if udelta < cfg.max_dropout:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
            verdict = SeqVerdict.VALID if udelta else SeqVerdict.MISORDERED
        elif udelta <= RTP_SEQ_MOD - cfg.max_misorder:
            if seq != self.bad_seq:
                self.bad_seq = (seq + 1) & 0xFFFF
                return SeqVerdict.JUMPED
            self._init_seq(seq)
            verdict = SeqVerdict.RESTARTED
        else:
            verdict = SeqVerdict.MISORDERED
        self.received += 1
        return verdict
