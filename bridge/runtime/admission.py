"""Admission control: refuse a new call before the media clock collapses (design notes §4).

Past 100 % CPU every tick is late and every leg suffers, so a bridge near its measured
capacity answers new INVITEs with 503 Service Unavailable and a Retry-After header
(RFC 3261 §21.5.4: the server is temporarily overloaded; §20.33: when to try again) instead
of taking them. Two bounds, both from ``[media]`` of :class:`bridge.config.MediaConfig`:

* a participant limit (the legs up plus the calls being answered right now), derived from
  ``bridge bench capacity``;
* a tick lateness guard: the p99 lateness of the last ``lateness_window_ticks`` ticks at or
  above ``max_lateness_p99_ms`` (for a machine slower or busier than the one measured).

With media worker processes (``[media] workers``) the participant limit counts per process:
a new call is refused while the main process (calls in the IVR and being answered) is at the
limit, or while every worker is (a caller joins a conference in some worker; a new room goes
to the least loaded one). The lateness guard watches the main process's clock.

:func:`admission_refusal` is a pure function of those inputs; the runtime passes the counts
and the recent lateness samples (seconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bridge.config import MediaConfig

__all__ = ["AdmissionRefused", "admission_refusal"]

SERVICE_UNAVAILABLE = 503


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionRefused:
    """The protocol answer to a call refused for capacity: status, Retry-After, and why."""

    status: int
    retry_after: int
    reason: str

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The extra response headers (RFC 3261 §20.33 ``Retry-After: delta-seconds``)."""
        return (("Retry-After", str(self.retry_after)),)


def admission_refusal(
    config: MediaConfig,
    *,
    participants: int,
    recent_lateness: npt.NDArray[np.float64],
    worker_participants: Sequence[int] = (),
) -> AdmissionRefused | None:
    """None when one more call may be taken; else the 503 to answer with.

    ``participants`` counts the legs up in this process and the calls being answered;
    ``worker_participants`` the legs of each media worker process (none: no workers);
    ``recent_lateness`` is the lateness in seconds of the last ticks (only the last
    ``lateness_window_ticks`` are looked at; the guard needs a full window, so a bridge that
    just started is not judged on its first few ticks).
    """
    limit = config.max_participants
    if limit and participants >= limit:
        return AdmissionRefused(
            status=SERVICE_UNAVAILABLE, retry_after=config.retry_after,
            reason=f"{participants} participants: at the limit of {limit}",
        )
    if limit and worker_participants and min(worker_participants) >= limit:
        return AdmissionRefused(
            status=SERVICE_UNAVAILABLE, retry_after=config.retry_after,
            reason=f"every media worker at the limit of {limit} participants "
                   f"({', '.join(str(n) for n in worker_participants)})",
        )
    window = config.lateness_window_ticks
    if config.max_lateness_p99_ms > 0 and recent_lateness.size >= window:
        p99_ms = float(np.percentile(recent_lateness[-window:], 99)) * 1000.0
        if p99_ms >= config.max_lateness_p99_ms:
            return AdmissionRefused(
                status=SERVICE_UNAVAILABLE, retry_after=config.retry_after,
                reason=f"p99 tick lateness {p99_ms:.1f} ms >= {config.max_lateness_p99_ms:g} ms",
            )
    return None
