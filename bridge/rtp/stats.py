"""Receiver statistics for one remote source (RFC 3550 §6.4.1, Appendix A.3 and A.8).

:class:`ReceiverStats` combines the A.1 source validator with the loss computation of A.3, the
interarrival jitter estimator of A.8 and the LSR/DLSR bookkeeping of §6.4.1, and produces the
report block the local side puts into its SR/RR.

Arrival times are passed in (``now``, seconds on a monotonic clock) and converted to timestamp
units with the payload clock rate; nothing here reads a clock.
"""

from __future__ import annotations

from bridge.rtp.rtcp import ReportBlock, ntp_middle32
from bridge.rtp.seq import RTP_SEQ_MOD, SeqConfig, SeqVerdict, SourceValidator, ts_diff

__all__ = ["ReceiverStats"]

_MAX_LOST = 0x7FFFFF
_MIN_LOST = -0x800000


class ReceiverStats:
    """Reception statistics about one SSRC, as seen by the local receiver."""

    __slots__ = (
        "_clock_rate",
        "_jitter",
        "_last_arrival",
        "_last_ts",
        "_lsr",
        "_lsr_arrival",
        "ssrc",
        "validator",
    )

    def __init__(
        self, ssrc: int, first_seq: int, *, clock_rate: int = 8000, seq: SeqConfig | None = None
    ) -> None:
        self.ssrc = ssrc
        self._clock_rate = clock_rate
        self.validator = SourceValidator(first_seq, seq)
        self._jitter = 0.0
        self._last_arrival: float | None = None
        self._last_ts = 0
        self._lsr = 0
        self._lsr_arrival: float | None = None

    def update(
        self, seq: int, timestamp: int, now: float, *, sample_jitter: bool = True
    ) -> SeqVerdict:
        """Account one received packet (RFC 3550 A.1 validation and A.8 jitter).

        ``sample_jitter=False`` skips the jitter sample, for packets whose timestamp is not a
        sampling instant (RFC 4733 events repeat the event's start timestamp).
        """
        verdict = self.validator.update(seq)
        if sample_jitter and verdict.accepted:
            if verdict is SeqVerdict.RESTARTED:
                self._last_arrival = None
            if self._last_arrival is not None:
                # D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1}), wrap-safe on S (A.8).
                d = (now - self._last_arrival) * self._clock_rate - ts_diff(
                    timestamp, self._last_ts
                )
                self._jitter += (abs(d) - self._jitter) / 16.0
            self._last_arrival = now
            self._last_ts = timestamp
        return verdict

    def update_next(self, seq: int, timestamp: int, now: float) -> bool:
        """:meth:`update` for the common audio packet, if ``seq`` is the next sequence number.

        Returns ``False`` without touching any state unless the source is valid (out of A.1
        probation) and ``seq`` is ``max_seq + 1``; otherwise does exactly what
        ``update(seq, timestamp, now)`` does for that packet (A.1: in order, ``received`` + 1,
        a wrap adds a cycle; A.8: one jitter sample) and returns ``True`` (verdict VALID).
        """
        v = self.validator
        max_seq = v.max_seq
        if v.probation or seq != (max_seq + 1) & 0xFFFF:
            return False
        if seq < max_seq:
            v.cycles += RTP_SEQ_MOD
        v.max_seq = seq
        v.received += 1
        last = self._last_arrival
        if last is not None:
            # D(i-1,i) as in update(), ts_diff inlined.
            d = (now - last) * self._clock_rate - (
                ((timestamp - self._last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            )
            self._jitter += (abs(d) - self._jitter) / 16.0
        self._last_arrival = now
        self._last_ts = timestamp
        return True

    # -- figures ---------------------------------------------------------------------------

    @property
    def received(self) -> int:
        """Packets received and deemed valid (duplicates included, as in A.3)."""
        return self.validator.received

    @property
    def expected(self) -> int:
        """Packets expected: extended highest seq - base seq + 1 (A.3)."""
        return self.validator.expected if not self.validator.probation else 0

    @property
    def lost(self) -> int:
        """Cumulative number of packets lost (A.3), clamped to the signed 24-bit field."""
        return max(_MIN_LOST, min(_MAX_LOST, self.expected - self.received))

    @property
    def jitter(self) -> int:
        """Interarrival jitter estimate in timestamp units (A.8, truncated to an integer)."""
        return int(self._jitter)

    @property
    def jitter_seconds(self) -> float:
        """Interarrival jitter in seconds."""
        return self._jitter / self._clock_rate

    # -- sender reports --------------------------------------------------------------------

    def on_sender_report(self, ntp_timestamp: int, now: float) -> None:
        """Remember the middle 32 bits of a received SR's NTP timestamp and its arrival (§6.4.1)."""
        self._lsr = ntp_middle32(ntp_timestamp)
        self._lsr_arrival = now

    def report_block(self, now: float) -> ReportBlock:
        """Build the report block about this source and start a new reporting interval.

        Fraction lost is over the interval since the previous call (A.3); DLSR is the delay
        since the last SR in units of 1/65536 s (§6.4.1), 0 when no SR was received.
        """
        v = self.validator
        expected = self.expected
        expected_interval = expected - v.expected_prior
        received_interval = v.received - v.received_prior
        v.expected_prior = expected
        v.received_prior = v.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        dlsr = 0
        if self._lsr_arrival is not None:
            dlsr = min(0xFFFFFFFF, max(0, int((now - self._lsr_arrival) * 65536)))
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            cumulative_lost=self.lost,
            highest_seq=v.extended_max & 0xFFFFFFFF,
            jitter=min(self.jitter, 0xFFFFFFFF),
            lsr=self._lsr,
            dlsr=dlsr,
        )
