"""SIP timer values (RFC 3261 §17 and Table 4 of Appendix A; RFC 6026 §8.4 Timers L and M).

One frozen value holds T1, T2 and T4; every transaction timer is derived from it, so tests pass
``SipTimers(t1=0.01, t2=0.08, t4=0.1)`` and run a whole call flow in milliseconds of fake time.
Times are in seconds. Nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SipTimers:
    """T1 (RTT estimate), T2 (maximum retransmit interval for non-INVITE requests and INVITE
    responses) and T4 (maximum time a message stays in the network), RFC 3261 Table 4.

    ``timer_d_unreliable`` is Timer D over UDP: "at least 32 seconds" (§17.1.1.2); it is a field
    of its own because it does not scale with T1.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d_unreliable: float = 32.0

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2):
            raise ValueError("SIP timers need 0 < T1 <= T2")
        if self.t4 <= 0 or self.timer_d_unreliable < 0:
            raise ValueError("SIP timers need T4 > 0 and Timer D >= 0")

    # --- INVITE client transaction (§17.1.1.2, RFC 6026 §7.2) ---------------------------------
    @property
    def timer_a(self) -> float:
        """Initial INVITE retransmit interval (doubles after each retransmission, UDP only)."""
        return self.t1

    @property
    def timer_b(self) -> float:
        """INVITE transaction timeout."""
        return 64 * self.t1

    def timer_d(self, *, reliable: bool) -> float:
        """Wait time for response retransmissions in Completed: >= 32 s for UDP, 0 for TCP."""
        return 0.0 if reliable else self.timer_d_unreliable

    @property
    def timer_m(self) -> float:
        """RFC 6026: wait time for retransmitted 2xx responses in Accepted (64*T1)."""
        return 64 * self.t1

    # --- non-INVITE client transaction (§17.1.2.2) --------------------------------------------
    @property
    def timer_e(self) -> float:
        """Initial non-INVITE retransmit interval (doubles, capped at T2; T2 in Proceeding)."""
        return self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE transaction timeout."""
        return 64 * self.t1

    def timer_k(self, *, reliable: bool) -> float:
        """Wait time for response retransmissions: T4 for UDP, 0 for TCP."""
        return 0.0 if reliable else self.t4

    # --- INVITE server transaction (§17.2.1, RFC 6026 §7.1) -----------------------------------
    @property
    def timer_g(self) -> float:
        """Initial INVITE final-response retransmit interval (doubles, capped at T2)."""
        return self.t1

    @property
    def timer_h(self) -> float:
        """Wait time for the ACK to a non-2xx final response."""
        return 64 * self.t1

    def timer_i(self, *, reliable: bool) -> float:
        """Wait time for ACK retransmissions in Confirmed: T4 for UDP, 0 for TCP."""
        return 0.0 if reliable else self.t4

    @property
    def timer_l(self) -> float:
        """RFC 6026: wait time for retransmitted INVITEs/2xx in Accepted (64*T1)."""
        return 64 * self.t1

    # --- non-INVITE server transaction (§17.2.2) ----------------------------------------------
    def timer_j(self, *, reliable: bool) -> float:
        """Wait time for request retransmissions in Completed: 64*T1 for UDP, 0 for TCP."""
        return 0.0 if reliable else 64 * self.t1

    # --- UA core (§13.3.1.4) ------------------------------------------------------------------
    @property
    def ack_timeout(self) -> float:
        """How long the UAS core retransmits its 2xx waiting for the ACK (64*T1)."""
        return 64 * self.t1

    def next_interval(self, previous: float) -> float:
        """Doubling retransmit interval capped at T2 (Timers E, G and the 2xx retransmission)."""
        return min(2 * previous, self.t2)
