"""Fixed-depth playout (jitter) buffer for one leg, driven by the 20 ms media tick.

Ordering uses the RTP timestamp (RFC 3550 §5.1: the sampling instant) mapped onto a line of
frame *slots* of ``frame_samples`` each; sequence numbers (RFC 1982 arithmetic) tell duplicates,
losses and timestamp discontinuities apart. The wall clock is never used for ordering: ``put``
accepts ``now`` only for symmetry with the other cores.

Behaviour per tick (:meth:`JitterBuffer.pop`, called exactly once per tick):

* BUFFERING (start, or after an underrun): output SILENCE until ``target_depth`` frames are
  queued, or the oldest queued frame has waited ``target_depth`` ticks (the frames after it
  are late: waiting for them would only build a backlog that is then flushed), then PLAYING
  from the oldest queued slot.
* PLAYING: output the frame of the current slot (AUDIO); if it is missing, conceal with REPEAT
  of the last payload at ``conceal_gains`` (1.0, 0.5, 0.25), then SILENCE; after that many
  consecutive missing frames with nothing queued the buffer returns to BUFFERING, so the next
  talkspurt re-anchors (silence suppression, RFC 3551 §4.1) instead of arriving "late".
* A packet for a slot already played or concealed is LATE; one for a queued slot is DUPLICATE.
* Depth (slots from the playout point to the newest queued frame) never exceeds ``max_depth``:
  a backlog beyond it is flushed, oldest first, back to ``target_depth``; a depth that stays
  above the target for ``shrink_after`` ticks (sender clock drift) loses one frame, so latency
  cannot creep.
* A timestamp jump of more than ``max_jump`` frames (sender re-based its timestamps, or restarted
  sequence and timestamp) re-synchronises: the packet is placed right after the newest known
  frame (by sequence distance when the sequence numbers are continuous) instead of stalling or
  flushing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from bridge.rtp.seq import seq_diff, ts_diff

__all__ = ["Frame", "FrameKind", "JitterBuffer", "JitterConfig", "JitterCounters", "PutResult"]


class FrameKind(enum.Enum):
    AUDIO = "audio"  # a received payload, play at gain 1.0
    REPEAT = "repeat"  # concealment: repeat the last payload at ``gain``
    SILENCE = "silence"  # nothing to play (buffering, or concealment exhausted)


class Frame(NamedTuple):
    """What to play for one tick. ``payload`` is the encoded frame (``None`` for SILENCE).

    Immutable and slotted; a ``NamedTuple`` because one is built per leg per tick and that is
    ~4x cheaper than a frozen dataclass.
    """

    kind: FrameKind
    payload: bytes | None
    gain: float
    seq: int | None
    timestamp: int | None


class PutResult(enum.Enum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass(frozen=True, slots=True, kw_only=True)
class JitterConfig:
    """Depths are counted in frames of ``frame_samples`` (160 = 20 ms at 8 kHz)."""

    frame_samples: int = 160
    target_depth: int = 2  # 40 ms: initial and post-flush depth
    max_depth: int = 3  # 60 ms: a deeper backlog is flushed to target_depth
    conceal_gains: tuple[float, ...] = (1.0, 0.5, 0.25)
    max_jump: int = 50  # frames (1 s): larger timestamp jumps re-synchronise
    max_misorder: int = 100  # sequence numbers: loss gaps above this are not counted
    shrink_after: int = 50  # ticks above target depth before one frame is dropped (drift)

    def __post_init__(self) -> None:
        if self.frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        if not 1 <= self.target_depth <= self.max_depth:
            raise ValueError("need 1 <= target_depth <= max_depth")
        if self.max_jump < self.max_depth:
            raise ValueError("max_jump must be at least max_depth")


@dataclass(slots=True)
class JitterCounters:
    """Cumulative counters for metrics."""

    queued: int = 0
    played: int = 0
    late: int = 0
    duplicate: int = 0
    lost: int = 0  # sequence numbers never played (gaps seen at playout)
    concealed: int = 0  # REPEAT frames produced
    flushed: int = 0  # queued frames dropped to cut a backlog (or to shrink after drift)
    resyncs: int = 0  # timestamp discontinuities handled
    underruns: int = 0  # returns to BUFFERING after concealment ran out


_BUFFERING_SILENCE = Frame(FrameKind.SILENCE, None, 0.0, None, None)
_AUDIO = FrameKind.AUDIO
_new_frame = tuple.__new__  # Frame(...) without the generated __new__'s Python frame


class JitterBuffer:
    """Per-leg playout buffer; see the module docstring for the policy."""

    __slots__ = (
        "_buf",
        "_cfg",
        "_last_payload",
        "_last_seq",
        "_last_slot",
        "_last_ts",
        "_missing",
        "_newest_seq",
        "_newest_slot",
        "_over_target",
        "_play_slot",
        "_playing",
        "_ref_slot",
        "_ref_ts",
        "_waited",
        "counters",
    )

    def __init__(self, config: JitterConfig | None = None) -> None:
        self._cfg = config if config is not None else JitterConfig()
        self.counters = JitterCounters()
        self._buf: dict[int, tuple[int, int, bytes]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the stream (new SSRC): drop queued frames, start BUFFERING. Keeps counters."""
        self._buf.clear()
        self._playing = False
        self._ref_ts: int | None = None  # timestamp of the reference slot
        self._ref_slot = 0
        self._play_slot = 0  # next slot to play (or the anchor while buffering)
        self._newest_slot = 0
        self._newest_seq = 0
        self._last_slot: int | None = None  # last slot consumed (played or concealed)
        self._last_seq: int | None = None  # seq of the last frame played or flushed
        self._last_ts = 0
        self._last_payload: bytes | None = None
        self._missing = 0
        self._over_target = 0
        self._waited = 0  # ticks the oldest queued frame has waited while BUFFERING

    # -- inspection ------------------------------------------------------------------------

    @property
    def config(self) -> JitterConfig:
        return self._cfg

    @property
    def playing(self) -> bool:
        """False while (re)buffering."""
        return self._playing

    @property
    def depth(self) -> int:
        """Frames from the playout point to the newest queued frame, inclusive (0 if empty)."""
        return self._newest_slot - self._play_slot + 1 if self._buf else 0

    def __len__(self) -> int:
        """Number of frames queued."""
        return len(self._buf)

    # -- input -----------------------------------------------------------------------------

    def put(self, packet_seq: int, timestamp: int, payload: bytes, now: float) -> PutResult:
        """Queue one received audio frame (``now`` is unused: ordering is by RTP timestamp)."""
        cfg = self._cfg
        fs = cfg.frame_samples
        counters = self.counters
        buf = self._buf
        ref_ts = self._ref_ts
        if buf and ref_ts is not None and timestamp == (ref_ts + fs) & 0xFFFFFFFF:
            # Fast path: the frame right after the reference (the newest queued frame), which
            # the general path below would queue as the new newest frame. The conditions are
            # checked, not assumed: a later slot inside max_jump, after the playout point.
            slot = self._ref_slot + 1
            play = self._play_slot
            if slot > self._newest_slot and play <= slot <= play + cfg.max_jump:
                self._newest_slot = self._ref_slot = slot
                self._newest_seq = packet_seq
                self._ref_ts = timestamp
                buf[slot] = (packet_seq, timestamp, payload)
                counters.queued += 1
                if slot - play >= cfg.max_depth:
                    self._flush()
                if not self._playing and slot - self._play_slot + 1 >= cfg.target_depth:
                    self._playing = True
                    self._missing = 0
                return PutResult.QUEUED
        return self._put(packet_seq, timestamp, payload)

    def _put(self, packet_seq: int, timestamp: int, payload: bytes) -> PutResult:
        """The general case of :meth:`put`."""
        cfg = self._cfg
        fs = cfg.frame_samples
        counters = self.counters
        buf = self._buf
        if self._ref_ts is None:
            self._ref_ts = timestamp
            self._ref_slot = self._play_slot
            slot = self._play_slot
        else:
            slot = self._ref_slot + (ts_diff(timestamp, self._ref_ts) + fs // 2) // fs
        if self._playing or buf:
            if abs(slot - self._play_slot) > cfg.max_jump:
                if buf:
                    known_slot, known_seq = self._newest_slot, self._newest_seq
                else:
                    known_slot = self._play_slot - 1
                    known_seq = self._last_seq if self._last_seq is not None else packet_seq
                sd = seq_diff(packet_seq, known_seq)
                if -cfg.max_misorder <= sd <= 0:
                    counters.late += 1  # a straggler from before a discontinuity
                    return PutResult.LATE
                step = sd if 0 < sd <= cfg.max_jump else 1
                slot = max(self._play_slot, known_slot + step)
                counters.resyncs += 1
                self._ref_ts = timestamp
                self._ref_slot = slot
            elif slot < self._play_slot:
                if (
                    self._playing
                    or (self._last_slot is not None and slot <= self._last_slot)
                    or self._newest_slot - slot >= cfg.max_depth
                ):
                    counters.late += 1
                    return PutResult.LATE
                self._play_slot = slot  # still buffering: an older frame moves the anchor back
        else:
            # Buffering with nothing queued: this packet anchors the playout point.
            last_slot = self._last_slot
            if last_slot is not None and slot <= last_slot:
                last_seq = self._last_seq if self._last_seq is not None else packet_seq
                if last_slot - slot > cfg.max_jump and seq_diff(packet_seq, last_seq) > 0:
                    slot = last_slot + 1  # timestamps went backwards, content is new
                    counters.resyncs += 1
                    self._ref_ts = timestamp
                    self._ref_slot = slot
                else:
                    counters.late += 1
                    return PutResult.LATE
            self._play_slot = slot
        if slot in buf:
            counters.duplicate += 1
            return PutResult.DUPLICATE
        if not buf or slot > self._newest_slot:
            self._newest_slot = slot
            self._newest_seq = packet_seq
            self._ref_ts = timestamp
            self._ref_slot = slot
        buf[slot] = (packet_seq, timestamp, payload)
        counters.queued += 1
        if self._newest_slot - self._play_slot >= cfg.max_depth:
            self._flush()
        if not self._playing and self._newest_slot - self._play_slot + 1 >= cfg.target_depth:
            self._playing = True
            self._missing = 0
        return PutResult.QUEUED

    def _flush(self, depth: int | None = None) -> None:
        """Drop the oldest frames until the depth is back to ``depth`` (default target)."""
        new_play = self._newest_slot - (self._cfg.target_depth if depth is None else depth) + 1
        buf = self._buf
        for s in range(self._play_slot, new_play):
            entry = buf.pop(s, None)
            if entry is not None:
                self.counters.flushed += 1
                self._last_seq = entry[0]
        self._play_slot = new_play
        if self._last_slot is None or self._last_slot < new_play - 1:
            self._last_slot = new_play - 1

    # -- output ----------------------------------------------------------------------------

    def pop(self) -> Frame:
        """The frame to play this tick. Call exactly once per tick."""
        cfg = self._cfg
        if not self._playing:
            if not self._buf:
                return _BUFFERING_SILENCE
            self._waited += 1
            if self._waited < cfg.target_depth:
                return _BUFFERING_SILENCE
            self._playing = True  # the oldest frame has waited long enough: play it now
            self._missing = 0
        if self._buf and self._newest_slot - self._play_slot >= cfg.target_depth:
            # Depth above target (sender clock faster, or a burst refilled to max): after
            # ``shrink_after`` such ticks drop one frame so latency returns to the target.
            self._over_target += 1
            if self._over_target >= cfg.shrink_after:
                self._over_target = 0
                self._flush(self._newest_slot - self._play_slot)
        else:
            self._over_target = 0
        slot = self._play_slot
        self._play_slot = slot + 1
        self._last_slot = slot
        entry = self._buf.pop(slot, None)
        counters = self.counters
        if entry is not None:
            seq, ts, payload = entry
            if self._last_seq is not None:
                gap = seq_diff(seq, self._last_seq) - 1
                if 0 < gap <= cfg.max_misorder:
                    counters.lost += gap
            self._last_seq = seq
            self._last_ts = ts
            self._last_payload = payload
            self._missing = 0
            counters.played += 1
            return _new_frame(Frame, (_AUDIO, payload, 1.0, seq, ts))
        self._missing = missing = self._missing + 1
        gains = cfg.conceal_gains
        seq_guess = None if self._last_seq is None else (self._last_seq + missing) & 0xFFFF
        ts_guess = (self._last_ts + missing * cfg.frame_samples) & 0xFFFFFFFF
        if not self._buf and missing >= len(gains):
            self._playing = False
            self._waited = 0
            counters.underruns += 1
        if missing <= len(gains) and self._last_payload is not None:
            counters.concealed += 1
            gain = gains[missing - 1]
            return Frame(FrameKind.REPEAT, self._last_payload, gain, seq_guess, ts_guess)
        return Frame(FrameKind.SILENCE, None, 0.0, seq_guess, ts_guess)
