"""N-minus-one conference mixer: every room of the process mixed in one vectorised pass per tick.

Per 20 ms tick (``Mixer.mix``), for all legs at once:

1. *Measure* every leg's power straight from its codes: a table maps each pair of G.711 codes
   (the payload viewed as uint16) to the sum of their squared decoded values, and one matrix
   product sums each row. Legs without a packet this tick count as silent; gain scales power.
2. *Gate* with the voice-activity detector (``bridge.media.vad``): only talking, unmuted legs feed
   the mix, and only they are *decoded* (a pair table again: two samples per lookup), so the
   cost of everything after the power measurement grows with talkers, not listeners.
3. *Sum* the feeding legs per room in int32. Rooms are grouped into buckets of similar talker
   count (powers of two) and each bucket is one padded gather + one ``sum(axis=0)``; the Python
   loop runs over buckets (at most ~14), never over rooms or participants. Room-wide
   announcements enter the sum as extra, virtual talkers.
4. *N-1*: each talker hears ``room_total - own``, exactly what was added subtracted again, then
   clipped once to int16 (never saturating on the way: the Asterisk echo bug of 2020).
   Every other leg of the room hears the same frame, ``clip(room_total)``, encoded once per
   (room, codec) and shared by row index. Deaf legs get a silence frame (still a packet, so
   trunks keep the call up). Private prompts are added to that leg's own frame.
5. A room of exactly two legs sharing a codec, with no mute/deaf/gain/prompt, relays each leg's
   payload bytes to the other without decode or encode (step 1 still measures their power for
   the talking events and levels).

The result is a ``MixOutput``: one uint8 block of encoded frames plus, per slot, the row to send.
The mixer is pure computation (no clock, no I/O, no global state); a room lives in one Mixer, so
rooms can be spread over processes by giving each its own Mixer.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from bridge.codecs.g711 import (
    ALAW_DECODE,
    ALAW_ENCODE,
    ALAW_PAIR_DECODE,
    ALAW_WIDE_ENCODE,
    ULAW_ENCODE,
    ULAW_PAIR_DECODE,
    ULAW_WIDE_ENCODE,
    WIDE_OFFSET,
    Codec,
)
from bridge.media.vad import FULL_SCALE_POWER, LEVEL_FLOOR_DBOV, Vad, VadConfig, dbov

__all__ = ["MixOutput", "Mixer", "MixerConfig"]

SILENCE_ROW = {Codec.PCMU: 0, Codec.PCMA: 1}
"""Rows of every ``MixOutput.frames`` block that hold a silent frame of each codec."""

_INT16_MIN = -32768
_INT16_MAX = 32767

IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class MixerConfig:
    """Sizes and tuning of a Mixer."""

    samples: int = 160
    """Samples per frame (20 ms at 8 kHz)."""
    initial_capacity: int = 64
    """Legs the buffers hold before they grow (by doubling)."""
    vad: VadConfig = field(default_factory=VadConfig)
    relay_two_party: bool = True
    """Relay payload bytes in two-party rooms instead of mixing."""

    def __post_init__(self) -> None:
        if self.samples < 2 or self.samples % 2:
            raise ValueError("samples per frame must be a positive even number")


class _Levels:
    """One tick's per-slot dBov levels, built on first use (the engine reads a few of them, for
    the legs that started or stopped talking); later reads return the same array."""

    __slots__ = ("_build", "_levels")

    def __init__(
        self,
        levels: npt.NDArray[np.float32] | None = None,
        build: Callable[[], npt.NDArray[np.float32]] | None = None,
    ) -> None:
        self._levels = levels
        self._build = build

    def get(self) -> npt.NDArray[np.float32]:
        if self._levels is None:
            assert self._build is not None
            self._levels = self._build()
            self._build = None
        return self._levels


@dataclass(frozen=True, slots=True, kw_only=True)
class MixOutput:
    """One tick's outgoing audio.

    ``frames`` holds encoded frames; ``rows[slot]`` is the row to send to that slot (-1 for a free
    slot). Legs that hear the same audio share a row. ``talking``/``level_dbov`` are indexed by
    slot; ``started``/``stopped`` list the slots whose talking state changed this tick. The
    arrays are views into the mixer's buffers, valid until the next ``mix()``.
    """

    frames: npt.NDArray[np.uint8]
    rows: IntArray
    talking: BoolArray
    levels: _Levels = field(repr=False)
    started: IntArray
    stopped: IntArray
    encoded: int
    """How many frames were encoded this tick (shared frames count once)."""

    @property
    def level_dbov(self) -> npt.NDArray[np.float32]:
        """Per slot: this tick's level in dBov (RFC 6464 §3), computed on first access."""
        return self.levels.get()

    def payload(self, slot: int) -> bytes:
        """The encoded payload to send to ``slot``."""
        row = int(self.rows[slot])
        if row < 0:
            raise KeyError(f"slot {slot} is not in use")
        return bytes(self.frames[row].tobytes())


@dataclass(slots=True)
class _Layout:
    """Per-slot facts derived from membership and flags; rebuilt only when those change."""

    room_index: IntArray  # dense room number per slot (0 for free slots)
    rooms: int
    by_room: IntArray  # active slots sorted by room
    relay_partner: IntArray  # the other leg of a relayed two-party room, or -1
    mixable: BoolArray  # active, not muted, not relayed
    hears_room: BoolArray  # active, not deaf, not relayed
    is_alaw: BoolArray
    alaw_slots: IntArray
    gain_slots: IntArray
    gain_values: npt.NDArray[np.float32]
    silence_rows: IntArray  # per slot: the silence row of its codec
    screen_key: npt.NDArray[np.uint8]  # (slots x 1): XOR making (code ^ key) & 0x7F fall with |x|
    screen_limit: npt.NDArray[np.uint8]  # (slots x 1): a masked code <= this may be loud
    screen_codec: Codec  # the lean tick's codec (PCMU when it has none)
    screen_lean_limit: int  # and its screen limit
    quiet_power: npt.NDArray[np.float32]  # per slot: mean-square bound of a screened frame
    always_measure: BoolArray  # gain legs (and every leg when the VAD is adaptive)
    # the lean tick (one codec, no gain, fixed-threshold VAD); see Mixer._mix_fast
    fast: bool
    pair_decode: npt.NDArray[np.uint32]
    encode: npt.NDArray[np.uint8]
    wide_encode: npt.NDArray[np.uint8]  # indexed by an int32 value + WIDE_OFFSET, saturating
    silence_row: int
    in_order: bool  # by_room is 0..n-1 (slots already sorted by room, none free)
    holes: bool  # some slot below the high-water mark is free
    all_mixable: bool  # no muted or relayed leg
    any_deaf: bool
    any_relay: bool
    quiet_level: npt.NDArray[np.float32]  # per slot: dBov of quiet_power
    hear_slots: IntArray
    hear_all: bool  # every slot below the high-water mark hears its room
    hear_rooms: IntArray  # room_index of hear_slots
    hear_count: IntArray  # per room: legs that hear the room
    deaf_slots: IntArray  # active deaf (or relayed) legs: they hear the silence row
    base_rows: IntArray  # per slot: -1 free, else the silence row of its codec


_T = TypeVar("_T", bound=np.generic)


def _grown(
    old: npt.NDArray[_T] | None, shape: tuple[int, ...], dtype: type[_T]
) -> npt.NDArray[_T]:
    """A zeroed array of ``shape`` whose leading rows copy ``old`` (when given)."""
    new = np.zeros(shape, dtype=dtype)
    if old is not None:
        keep = min(old.shape[0], shape[0])
        new[:keep] = old[:keep]
    return new


def _clip16(block: npt.NDArray[np.int32]) -> None:
    """Clip int32 samples to the int16 range in place (np.clip's wrapper costs ~3 us, which
    dominates small blocks; on large ones its ufunc is the faster loop)."""
    if block.size > 4096:
        np.clip(block, _INT16_MIN, _INT16_MAX, out=block)
    else:
        np.minimum(block, _INT16_MAX, out=block)
        np.maximum(block, _INT16_MIN, out=block)


SCREEN_KEY = {Codec.PCMU: 0x00, Codec.PCMA: 0x2A}
"""``(code ^ key) & 0x7F`` is 0 for the loudest codes of a law and grows as the magnitude falls."""

_BYTES = 0x0101010101010101  # one in every byte of a uint64 word
_LOW7_WORD = np.uint64(0x7F * _BYTES)
_HIGH_WORD = np.uint64(0x80 * _BYTES)


def screen_magnitudes(codec: Codec) -> npt.NDArray[np.int32]:
    """``|decoded sample|`` of every masked code ``(code ^ key) & 0x7F`` (non-increasing)."""
    masked = np.arange(128, dtype=np.int32) ^ SCREEN_KEY[codec]
    magnitudes: npt.NDArray[np.int32] = np.abs(codec.decode_table[masked].astype(np.int32))
    return magnitudes


def screen_limit(codec: Codec, threshold_power: float) -> tuple[int, float]:
    """The largest masked code whose square reaches 0.999 x ``threshold_power``, and the largest
    square of a code beyond it: a frame without a code <= the limit has a mean square below that
    bound, so it is provably quieter than the threshold (the 0.1 % margin dwarfs float32 error).
    """
    squares = screen_magnitudes(codec).astype(np.float64) ** 2
    loud = np.nonzero(squares >= 0.999 * threshold_power)[0]
    limit = int(loud[-1]) if loud.size else 0
    return limit, float(squares[limit + 1]) if limit < 127 else 0.0


def screen_words(
    payload: npt.NDArray[np.uint8], codec: Codec, limit: int, out: npt.NDArray[np.uint64]
) -> None:
    """The screen of ``screen_limit`` on 8 codes at a time: ``out`` (legs x samples/8) gets, per
    byte of ``payload`` (legs x samples, samples a multiple of 8), 0x80 when its masked code
    ``(code ^ key) & 0x7F`` is <= ``limit`` (it may be loud), else 0; a leg may be loud exactly
    when a word of its row is non-zero. Per byte, ``(0x80 + limit) - masked`` lies in 1..255 for
    every masked code in 0..127 and limit in 0..127, so no byte borrows from its neighbour, and
    its bit 7 is set exactly when ``masked <= limit``.
    """
    words = payload.view(np.uint64)
    if SCREEN_KEY[codec]:
        np.bitwise_xor(words, np.uint64(SCREEN_KEY[codec] * _BYTES), out=out)
        np.bitwise_and(out, _LOW7_WORD, out=out)
    else:
        np.bitwise_and(words, _LOW7_WORD, out=out)
    np.subtract(np.uint64((0x80 + int(limit)) * _BYTES), out, out=out)
    np.bitwise_and(out, _HIGH_WORD, out=out)


class Mixer:
    """All rooms of one process, mixed in one vectorised pass per tick.

    Typical use by the engine, every 20 ms::

        mixer.payload_in[slot] = np.frombuffer(payload, np.uint8)   # for each received frame
        mixer.has_input[slot] = True
        out = mixer.mix()
        for slot in live_slots: send(slot, out.payload(slot))      # or out.frames[out.rows[slot]]

    ``payload_in`` and ``has_input`` are replaced when the mixer grows (on ``add_leg``), so fetch
    them after adding legs rather than caching them. ``has_input`` is cleared by ``mix()``.
    """

    _payload: npt.NDArray[np.uint8]
    _has_input: BoolArray
    _active: BoolArray
    _room: npt.NDArray[np.int64]
    _codec: npt.NDArray[np.uint8]
    _muted: BoolArray
    _deaf: BoolArray
    _gain: npt.NDArray[np.float32]
    _private: npt.NDArray[np.int16]
    _has_private: BoolArray

    def __init__(self, config: MixerConfig | None = None) -> None:
        self.config = config if config is not None else MixerConfig()
        capacity = max(1, self.config.initial_capacity)
        self._capacity = 0
        self._count = 0  # high-water mark: slots [0, _count) may be in use
        self._free: list[int] = []
        self._vad = Vad(self.config.vad, capacity)
        self._layout: _Layout | None = None
        self._broadcast: dict[int, npt.NDArray[np.int16]] = {}
        self._private_any = False
        self._last_candidates = 0  # lean tick: how many legs the screen let through last time
        self._out = np.empty((0, self.config.samples), dtype=np.uint8)
        self._grow(capacity)
        self._reserve_out(2 + 2 * capacity)

    # ----------------------------------------------------------------- membership and flags

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def payload_in(self) -> npt.NDArray[np.uint8]:
        """(capacity x samples) block of received codes, one row per slot, filled by the engine."""
        return self._payload

    @property
    def has_input(self) -> BoolArray:
        """Per slot: a frame was written into ``payload_in`` this tick (else it mixes silence)."""
        return self._has_input

    def add_leg(self, room: int, codec: Codec) -> int:
        """Add a leg to ``room`` and return its slot (the lowest free one)."""
        if self._free:
            slot = heapq.heappop(self._free)
        else:
            if self._count == self._capacity:
                self._grow(2 * self._capacity)
            slot = self._count
            self._count += 1
        self._active[slot] = True
        self._room[slot] = room
        self._codec[slot] = codec.payload_type
        self._muted[slot] = False
        self._deaf[slot] = False
        self._gain[slot] = 1.0
        self._has_input[slot] = False
        self._has_private[slot] = False
        self._payload[slot] = codec.silence_byte
        self._vad.reset(slot)
        self._layout = None
        return slot

    def remove_leg(self, slot: int) -> None:
        """Free ``slot``; it may be handed out again by ``add_leg``."""
        self._check(slot)
        self._active[slot] = False
        self._has_input[slot] = False
        self._has_private[slot] = False
        self._vad.reset(slot)
        heapq.heappush(self._free, slot)
        while self._count and not self._active[self._count - 1]:
            self._count -= 1
        self._free = [s for s in self._free if s < self._count]
        heapq.heapify(self._free)
        self._layout = None

    def room_of(self, slot: int) -> int:
        self._check(slot)
        return int(self._room[slot])

    def set_muted(self, slot: int, muted: bool) -> None:
        """A muted leg is still measured by the VAD but never feeds the mix."""
        self._check(slot)
        self._muted[slot] = muted
        self._layout = None

    def set_deaf(self, slot: int, deaf: bool) -> None:
        """A deaf leg receives silence frames (and its private prompts) instead of the room."""
        self._check(slot)
        self._deaf[slot] = deaf
        self._layout = None

    def set_gain(self, slot: int, gain: float) -> None:
        """Scale what the others hear of this leg (1.0 = unchanged; saturates at int16)."""
        self._check(slot)
        if not gain >= 0.0:
            raise ValueError(f"gain must be >= 0, got {gain}")
        self._gain[slot] = gain
        self._layout = None

    def play_private(self, slot: int, pcm: npt.NDArray[np.int16]) -> None:
        """Add one frame of ``pcm`` to what ``slot`` hears on the next tick only."""
        self._check(slot)
        self._private[slot] = self._frame(pcm)
        self._has_private[slot] = True
        self._private_any = True

    def play_room(self, room: int, pcm: npt.NDArray[np.int16]) -> None:
        """Add one frame of ``pcm`` to what every non-deaf leg of ``room`` hears next tick."""
        frame = self._frame(pcm)
        previous = self._broadcast.get(room)
        if previous is not None:
            total = previous.astype(np.int32) + frame
            frame = np.clip(total, _INT16_MIN, _INT16_MAX).astype(np.int16)
        self._broadcast[room] = frame

    # ----------------------------------------------------------------------------- the tick

    def mix(self) -> MixOutput:
        """Mix one tick for every room and clear the per-tick inputs."""
        layout = self._layout if self._layout is not None else self._build_layout()
        self._layout = layout
        if layout.fast and not self._broadcast and not self._private_any:
            return self._mix_fast(layout)
        n = self._count
        samples = self.config.samples
        payload = self._payload[:n]
        active = self._active[:n]
        has_input = self._has_input[:n]

        # 1. screen: a leg none of whose codes reaches the threshold magnitude is quiet (its mean
        #    square is at most its peak squared), so it is neither decoded nor measured; legs
        #    still talking (hangover) or with a gain are always measured
        measure = self._measure_mask(layout, payload, has_input)
        measured = layout.by_room[measure[layout.by_room]]
        count = measured.size
        codes = self._codes[:count]
        np.take(payload, measured, axis=0, out=codes)
        decoded = self._decoded[:count]
        np.take(ULAW_PAIR_DECODE, codes.view(np.uint16), out=decoded.view(np.uint32))
        if layout.alaw_slots.size:
            alaw_measured = np.nonzero(layout.is_alaw[measured])[0]
            if alaw_measured.size:
                decoded[alaw_measured] = ALAW_DECODE[codes[alaw_measured]]

        # 2. power of the measured legs (exact sum of squares in float32), gain^2 scales it;
        #    screened legs get their bound, legs without a packet count as silent
        power = self._power[:n]
        np.multiply(has_input, layout.quiet_power, out=power)
        floats = self._floats[:count]
        np.copyto(floats, decoded)
        measured_power = self._measured_power[:count]
        np.einsum("ij,ij->i", floats, floats, out=measured_power)
        measured_power *= np.float32(1.0 / samples)
        power[measured] = measured_power
        if layout.gain_slots.size:
            power[layout.gain_slots] *= layout.gain_values * layout.gain_values
        vad = self._vad.update_power(power, active)

        relay = layout.relay_partner >= 0
        mixable = layout.mixable
        hears_room = layout.hears_room
        if self._broadcast or self._private_any:
            relay, mixable, hears_room = self._suspend_relay(layout, relay)
        feed = vad.gate & mixable & has_input

        # 3. the talkers (sorted by room, a subset of the measured legs: a screened leg is never
        #    loud) go to rows 0..T-1 of _pcm, gains applied; room announcements follow as
        #    virtual talkers (owner -1)
        feeding = feed[measured]
        feeders = measured[feeding]
        talkers = feeders.size
        contribution = self._pcm[:talkers]
        np.compress(feeding, decoded, axis=0, out=contribution)
        if layout.gain_slots.size:
            gained = np.nonzero(self._gain[feeders] != 1.0)[0]
            if gained.size:
                factor = self._gain[feeders[gained]][:, None]
                scaled = np.rint(contribution[gained] * factor)
                np.clip(scaled, _INT16_MIN, _INT16_MAX, out=scaled)
                contribution[gained] = scaled.astype(np.int16)
        owners = feeders
        positions = np.arange(talkers, dtype=np.intp)
        feeder_rooms = layout.room_index[feeders]
        if self._broadcast:
            owners, positions, feeder_rooms = self._add_broadcasts(
                layout, owners, positions, feeder_rooms
            )
        row_of_slot: IntArray | None = None
        if self._private_any:
            row_of_slot = np.full(n, -1, dtype=np.intp)
            row_of_slot[feeders] = np.arange(talkers)

        listening = hears_room & ~feed
        need = np.zeros((2, layout.rooms), dtype=np.bool_)
        need[layout.is_alaw[listening].astype(np.intp), layout.room_index[listening]] = True
        shared_rows = np.empty((2, layout.rooms), dtype=np.intp)
        shared_rows[0] = SILENCE_ROW[Codec.PCMU]
        shared_rows[1] = SILENCE_ROW[Codec.PCMA]

        rows = np.full(n, -1, dtype=np.intp)
        cursor = 2
        # upper bound of rows this tick: padded talkers, shared frames, relays, private prompts
        self._reserve_out(2 + 2 * owners.size + 2 * layout.rooms + 2 * n)
        room_total: npt.NDArray[np.int32] | None = None
        has_total: BoolArray | None = None
        if self._private_any:
            room_total = np.zeros((layout.rooms, samples), dtype=np.int32)
            has_total = np.zeros(layout.rooms, dtype=np.bool_)

        if owners.size:
            change = np.nonzero(feeder_rooms[1:] != feeder_rooms[:-1])[0] + 1
            starts = np.concatenate(([0], change))
            counts = np.diff(np.append(starts, owners.size))
            buckets = np.ceil(np.log2(counts)).astype(np.intp)
            low, high = int(buckets.min()), int(buckets.max())
            for bucket in [low] if low == high else np.unique(buckets).tolist():
                chosen = np.nonzero(buckets == bucket)[0]
                cursor = self._mix_bucket(
                    layout=layout,
                    owners=owners,
                    positions=positions,
                    feeder_rooms=feeder_rooms,
                    starts=starts[chosen],
                    counts=counts[chosen],
                    need=need,
                    shared_rows=shared_rows,
                    rows=rows,
                    cursor=cursor,
                    room_total=room_total,
                    has_total=has_total,
                )

        # 4. everyone who is not a talker hears the shared frame of their room and codec
        codec_row = layout.is_alaw.astype(np.intp)
        rows[listening] = shared_rows[codec_row[listening], layout.room_index[listening]]
        deaf_or_relay = active & ~hears_room
        rows[deaf_or_relay] = layout.silence_rows[deaf_or_relay]

        # 5. two-party relay: copy the partner's payload bytes (no decode, no encode)
        relayed = np.nonzero(relay)[0]
        if relayed.size:
            partners = layout.relay_partner[relayed]
            fresh = self._has_input[partners]
            relayed, partners = relayed[fresh], partners[fresh]
            self._out[cursor : cursor + relayed.size] = self._payload[partners]
            rows[relayed] = np.arange(cursor, cursor + relayed.size)
            cursor += relayed.size

        encoded = cursor - 2 - relayed.size
        if self._private_any:
            assert room_total is not None and has_total is not None and row_of_slot is not None
            cursor = self._mix_private(
                layout=layout,
                row_of_slot=row_of_slot,
                room_total=room_total,
                has_total=has_total,
                rows=rows,
                cursor=cursor,
            )
            encoded = cursor - 2 - relayed.size

        self._has_input[:n] = False
        self._has_private[:n] = False
        self._private_any = False
        self._broadcast.clear()
        return MixOutput(
            frames=self._out[:cursor],
            rows=rows,
            talking=vad.talking,
            levels=_Levels(vad.level_dbov),
            started=vad.started,
            stopped=vad.stopped,
            encoded=encoded,
        )

    # ------------------------------------------------------------------------------ helpers

    def _mix_fast(self, layout: _Layout) -> MixOutput:
        """The common tick (one codec, no gain, no prompt, fixed-threshold gate) in few numpy
        calls; the output is exactly that of the general path.

        Only the *candidates* (legs with input and a code that may be loud, or talking) are
        decoded and measured, and the VAD advances only them (``Vad.update_subset``); the screen
        reads 8 codes per word and is skipped when everybody talks. When every room with talkers
        has the same number of them (one room; rooms of equal activity), the sums and N-1
        frames are one padded (talkers x rooms) int32 block, without buckets, encoded and
        saturated by one lookup in the wide table; a room with a single talker needs no N-1
        arithmetic (it hears silence). Levels are built only if ``level_dbov`` is read.
        """
        n = self._count
        samples = self.config.samples
        payload = self._payload[:n]
        has_input = self._has_input[:n]

        # 1. screen, candidates in room order, decode and measure them
        cands = self._fast_candidates(layout, payload, has_input)
        count = cands.size
        if count == n and layout.in_order:  # everybody may talk: no gather
            codes = payload
        else:
            codes = self._codes[:count]
            payload.take(cands, axis=0, out=codes)
        decoded = self._decoded[:count]
        layout.pair_decode.take(codes.view(np.uint16), out=decoded.view(np.uint32))
        floats = self._floats[:count]
        np.copyto(floats, decoded)
        power = self._measured_power[:count]
        np.einsum("ij,ij->i", floats, floats, out=power)
        power *= np.float32(1.0 / samples)
        fresh = has_input[cands]
        power *= fresh  # a talking leg without a packet is silent
        vad = self._vad.update_subset(n, cands, power, dense=count == n and layout.in_order)
        sent = self._sent[:n]
        np.copyto(sent, has_input)  # has_input is cleared below; the levels are built later

        def levels() -> npt.NDArray[np.float32]:
            level = self._power[:n]  # screened legs: their bound, or the floor without a packet
            level.fill(LEVEL_FLOOR_DBOV)
            np.copyto(level, layout.quiet_level, where=sent)
            level[cands] = vad.level_dbov
            return level

        # 2. the talkers, in room order
        feed = vad.gate & fresh
        if not layout.all_mixable:
            feed &= layout.mixable[cands]
        chosen = feed.nonzero()[0]
        feeders = cands[chosen]
        talkers = feeders.size
        rows = layout.base_rows.copy()
        cursor = 2
        self._reserve_out(2 + 2 * talkers + 2 * layout.rooms + n)
        if talkers:
            if talkers == count:  # every candidate feeds: no gather
                pcm = decoded
            else:
                pcm = self._pcm[:talkers]
                decoded.take(chosen, axis=0, out=pcm)
            cursor = self._mix_talkers(layout, feeders, pcm, rows, cursor)

        # 3. two-party relay: copy the partner's payload bytes (no decode, no encode)
        relayed = 0
        if layout.any_relay:
            relay = np.nonzero(layout.relay_partner >= 0)[0]
            partners = layout.relay_partner[relay]
            fresh_partner = has_input[partners]
            relay, partners = relay[fresh_partner], partners[fresh_partner]
            relayed = relay.size
            self._out[cursor : cursor + relayed] = payload[partners]
            rows[relay] = np.arange(cursor, cursor + relayed)
            cursor += relayed

        has_input[:] = False
        return MixOutput(
            frames=self._out[:cursor],
            rows=rows,
            talking=vad.talking,
            levels=_Levels(build=levels),
            started=vad.started,
            stopped=vad.stopped,
            encoded=cursor - 2 - relayed,
        )

    def _fast_candidates(
        self, layout: _Layout, payload: npt.NDArray[np.uint8], has_input: BoolArray
    ) -> IntArray:
        """The lean tick's candidates, in room order: legs with input and a code that may be
        loud (the exact per-code screen of ``_measure_mask``), and legs still talking.

        When every leg talks, all are candidates whatever their codes, so the screen is skipped.
        Otherwise the screen runs on 8 codes at a time (SWAR in uint64 words): per byte,
        ``(0x80 + limit) - (code & 0x7F)`` keeps bit 7 exactly when the masked code is <= the
        limit, and no byte borrows from its neighbour. With few legs loud last tick the loud words
        are found with one ``nonzero``; with many, each row's words are OR-reduced.
        """
        n = payload.shape[0]
        samples = self.config.samples
        talking = self._vad.talking[:n]
        active_legs = layout.by_room.size
        if active_legs and np.count_nonzero(talking) == active_legs:
            self._last_candidates = active_legs
            cands: IntArray = layout.by_room
            return cands
        candidate = self._any_loud[:n]
        if samples % 8 == 0:
            per_row = samples // 8
            words = self._screen_words[:n]
            screen_words(payload, layout.screen_codec, layout.screen_lean_limit, out=words)
            if 16 * self._last_candidates < n:  # few loud legs: find the loud words
                hit = self._screen_hit[:n]
                np.not_equal(words, 0, out=hit)
                loud_words = hit.ravel().nonzero()[0]
                loud_words //= per_row
                candidate.fill(False)
                candidate[loud_words] = True
            else:
                any_word = self._any_word[:n]
                np.bitwise_or.reduce(words, axis=1, out=any_word)
                np.not_equal(any_word, 0, out=candidate)
        else:
            masked = self._masked[:n]
            np.bitwise_xor(payload, SCREEN_KEY[layout.screen_codec], out=masked)
            np.bitwise_and(masked, 0x7F, out=masked)
            loud_code = self._loud_code[:n]
            np.less_equal(masked, layout.screen_lean_limit, out=loud_code)
            np.logical_or.reduce(loud_code, axis=1, out=candidate)
        candidate &= has_input
        candidate |= talking  # with or without input: the hangover runs
        if layout.holes:
            candidate &= self._active[:n]
        if layout.in_order:
            cands = candidate.nonzero()[0]
        else:
            cands = layout.by_room[candidate[layout.by_room]]
        self._last_candidates = cands.size
        return cands

    def _mix_talkers(
        self, layout: _Layout, feeders: IntArray, pcm: npt.NDArray[np.int16], rows: IntArray,
        cursor: int,
    ) -> int:
        """Encode the N-1 frames of ``feeders`` (slots sorted by room, decoded in ``pcm``) and the
        shared frame of their rooms; set ``rows`` of every leg of those rooms."""
        samples = self.config.samples
        talkers = feeders.size
        if layout.rooms == 1:
            nrooms, width = 1, talkers
        else:
            feeder_rooms = layout.room_index[feeders]
            nrooms = int(np.count_nonzero(feeder_rooms[1:] != feeder_rooms[:-1])) + 1
            width = talkers // nrooms
            grid = feeder_rooms.reshape(nrooms, width) if width * nrooms == talkers else None
            if grid is None or not np.array_equal(grid[:, 0], grid[:, -1]):
                if pcm.base is not self._pcm:  # the buckets gather from _pcm
                    np.copyto(self._pcm[:talkers], pcm)
                return self._mix_buckets(layout, feeders, feeder_rooms, rows, cursor)
        talker_rooms = layout.room_index[feeders[::width]]
        size = width * nrooms
        total: npt.NDArray[np.int32] | None = None
        if width > 1:  # a lone talker hears silence, the room hears the talker
            block = self._scratch32[: size * samples].reshape(width, nrooms, samples)
            np.copyto(block, pcm.reshape(nrooms, width, samples).transpose(1, 0, 2))
            total = self._total[: nrooms * samples].reshape(nrooms, samples)
            np.add.reduce(block, axis=0, out=total)
            out = self._out[cursor : cursor + size].reshape(width, nrooms, samples)
            offset_total = self._offset_total[: nrooms * samples].reshape(nrooms, samples)
            np.add(total, WIDE_OFFSET, out=offset_total)
            np.subtract(offset_total, block, out=block)  # exactly what was added, removed again
            # one lookup encodes and saturates (clipped once, at the end): with up to three
            # talkers |N-1| <= 2 x 32256 < WIDE_OFFSET stays inside the wide table; with more,
            # take's "clip" mode clamps the index to the table's ends, -32768 and 32767
            if width <= 3:
                layout.wide_encode.take(block, out=out)
            else:
                layout.wide_encode.take(block, out=out, mode="clip")
            own_rows = np.arange(cursor, cursor + size).reshape(width, nrooms)
            cursor += size

        # every leg of the room that hears it and is not a talker shares one frame
        if layout.any_deaf:
            hearing = layout.hears_room[feeders].reshape(nrooms, width).sum(axis=1)
            wanted = (layout.hear_count[talker_rooms] > hearing).nonzero()[0]
        else:
            wanted = (layout.hear_count[talker_rooms] > width).nonzero()[0]
        shared = wanted.size
        if shared:
            if total is None:
                shared16 = pcm
            else:
                _clip16(total)
                shared16 = self._scratch16[: nrooms * samples].reshape(nrooms, samples)
                np.copyto(shared16, total, casting="unsafe")
            target = self._out[cursor : cursor + shared]
            source = shared16 if shared == nrooms else shared16[wanted]
            layout.encode.take(source.view(np.uint16), out=target)
            if layout.rooms > 1:
                room_row = np.full(layout.rooms, layout.silence_row, dtype=np.intp)
                room_row[talker_rooms[wanted]] = np.arange(cursor, cursor + shared)
                rows[layout.hear_slots] = room_row[layout.hear_rooms]
            elif layout.hear_all:
                rows.fill(cursor)
            else:
                rows[layout.hear_slots] = cursor
            cursor += shared
        if width == 1:
            rows[feeders] = layout.silence_row
        else:
            rows[feeders.reshape(nrooms, width).T] = own_rows
        if layout.any_deaf:
            rows[layout.deaf_slots] = layout.base_rows[layout.deaf_slots]
        return cursor

    def _mix_buckets(
        self, layout: _Layout, feeders: IntArray, feeder_rooms: IntArray, rows: IntArray,
        cursor: int,
    ) -> int:
        """``_mix_talkers`` for rooms of different talker counts: padded buckets."""
        n = self._count
        law = 1 if layout.encode is ALAW_ENCODE else 0
        feeding = np.zeros(n, dtype=np.bool_)
        feeding[feeders] = True
        listening = layout.hears_room & ~feeding
        need = np.zeros((2, layout.rooms), dtype=np.bool_)
        need[law, layout.room_index[listening]] = True
        shared_rows = np.full((2, layout.rooms), layout.silence_row, dtype=np.intp)
        positions = np.arange(feeders.size, dtype=np.intp)
        change = np.nonzero(feeder_rooms[1:] != feeder_rooms[:-1])[0] + 1
        starts = np.concatenate(([0], change))
        counts = np.diff(np.append(starts, feeders.size))
        buckets = np.ceil(np.log2(counts)).astype(np.intp)
        for bucket in np.unique(buckets).tolist():
            picked = np.nonzero(buckets == bucket)[0]
            cursor = self._mix_bucket(
                layout=layout,
                owners=feeders,
                positions=positions,
                feeder_rooms=feeder_rooms,
                starts=starts[picked],
                counts=counts[picked],
                need=need,
                shared_rows=shared_rows,
                rows=rows,
                cursor=cursor,
                room_total=None,
                has_total=None,
            )
        rows[listening] = shared_rows[law, layout.room_index[listening]]
        if layout.any_deaf:
            rows[layout.deaf_slots] = layout.base_rows[layout.deaf_slots]
        return cursor

    def _measure_mask(
        self, layout: _Layout, payload: npt.NDArray[np.uint8], has_input: BoolArray
    ) -> BoolArray:
        """Legs with input that may be loud (a code reaches the threshold magnitude), that are
        still talking (their hangover keeps them in the mix), or that are always measured."""
        n = payload.shape[0]
        masked = self._masked[:n]
        loud_code = self._loud_code[:n]
        if layout.alaw_slots.size:
            np.bitwise_xor(payload, layout.screen_key, out=masked)
            np.bitwise_and(masked, 0x7F, out=masked)
            np.less_equal(masked, layout.screen_limit, out=loud_code)
        else:  # all mu-law: one key and one limit
            np.bitwise_and(payload, 0x7F, out=masked)
            np.less_equal(masked, layout.screen_limit[0, 0] if n else 0, out=loud_code)
        measure = self._any_loud[:n]
        samples = self.config.samples
        if samples % 8 == 0:  # any() over 8 bytes at a time, reduced across the rows' words
            words = self._any_word[:n]
            np.bitwise_or.reduce(loud_code.view(np.uint64).T, axis=0, out=words)
            np.not_equal(words, 0, out=measure)
        else:
            np.logical_or.reduce(loud_code, axis=1, out=measure)
        measure |= self._vad.talking[:n]
        measure |= layout.always_measure
        measure &= has_input
        return measure


    def _mix_bucket(
        self,
        *,
        layout: _Layout,
        owners: IntArray,
        positions: IntArray,
        feeder_rooms: IntArray,
        starts: IntArray,
        counts: IntArray,
        need: BoolArray,
        shared_rows: IntArray,
        rows: IntArray,
        cursor: int,
        room_total: npt.NDArray[np.int32] | None,
        has_total: BoolArray | None,
    ) -> int:
        """Mix the rooms of one bucket (similar talker counts) as one padded (m x rooms) block."""
        samples = self.config.samples
        width = int(counts.max())
        nrooms = starts.size
        depth = np.arange(width, dtype=np.intp)[:, None]
        valid = depth < counts[None, :]
        position = np.where(valid, starts[None, :] + depth, 0)
        index = np.where(valid, positions[position], self._zero_row)  # rows of _pcm
        owner = np.where(valid, owners[position], -1)  # (width, nrooms) slots, -1: none
        size = width * nrooms * samples
        block16 = self._scratch16[:size].reshape(width, nrooms, samples)
        np.take(self._pcm, index, axis=0, out=block16)
        total = self._total[: nrooms * samples].reshape(nrooms, samples)
        np.sum(block16, axis=0, dtype=np.int32, out=total)
        rooms = feeder_rooms[starts]
        if room_total is not None and has_total is not None:
            room_total[rooms] = total
            has_total[rooms] = True

        # talkers: room total minus exactly their own contribution, clipped once
        block32 = self._scratch32[:size].reshape(width, nrooms, samples)
        np.subtract(total[None, :, :], block16, out=block32)
        np.clip(block32, _INT16_MIN, _INT16_MAX, out=block32)
        np.copyto(block16, block32, casting="unsafe")
        talkers = width * nrooms
        out = self._out[cursor : cursor + talkers].reshape(width, nrooms, samples)
        np.take(ULAW_ENCODE, block16.view(np.uint16), out=out)
        real = owner >= 0
        slots = owner[real]
        flat = np.nonzero(real.ravel())[0]
        alaw = layout.is_alaw[slots]
        if alaw.any():
            flat_a = flat[alaw]
            out_flat = out.reshape(talkers, samples)
            pcm_flat = block16.reshape(talkers, samples)
            out_flat[flat_a] = ALAW_ENCODE[pcm_flat[flat_a].view(np.uint16)]
        rows[slots] = cursor + flat
        cursor += talkers

        # listeners: one shared frame per (room, codec) that someone hears
        shared16 = block16[0]  # reuse: the talker frames are already encoded
        np.clip(total, _INT16_MIN, _INT16_MAX, out=total)
        np.copyto(shared16, total, casting="unsafe")
        for law, table in ((0, ULAW_ENCODE), (1, ALAW_ENCODE)):
            wanted = np.nonzero(need[law, rooms])[0]
            if wanted.size:
                target = self._out[cursor : cursor + wanted.size]
                np.take(table, shared16[wanted].view(np.uint16), out=target)
                shared_rows[law, rooms[wanted]] = np.arange(cursor, cursor + wanted.size)
                cursor += wanted.size
        return cursor

    def _mix_private(
        self,
        *,
        layout: _Layout,
        row_of_slot: IntArray,
        room_total: npt.NDArray[np.int32],
        has_total: BoolArray,
        rows: IntArray,
        cursor: int,
    ) -> int:
        """Give each leg with a private prompt its own frame: what it hears plus the prompt."""
        slots = np.nonzero(self._has_private[: self._count] & self._active[: self._count])[0]
        if not slots.size:
            return cursor
        rooms = layout.room_index[slots]
        hears = ~self._deaf[slots] & has_total[rooms]
        frames = np.where(hears[:, None], room_total[rooms], 0)
        own = hears & (row_of_slot[slots] >= 0)
        frames[own] -= self._pcm[row_of_slot[slots[own]]]
        frames += self._private[slots]
        np.clip(frames, _INT16_MIN, _INT16_MAX, out=frames)
        frames16 = frames.astype(np.int16)
        target = self._out[cursor : cursor + slots.size]
        np.take(ULAW_ENCODE, frames16.view(np.uint16), out=target)
        alaw = layout.is_alaw[slots]
        if alaw.any():
            target[alaw] = ALAW_ENCODE[frames16[alaw].view(np.uint16)]
        rows[slots] = np.arange(cursor, cursor + slots.size)
        return cursor + slots.size

    def _suspend_relay(
        self, layout: _Layout, relay: BoolArray
    ) -> tuple[BoolArray, BoolArray, BoolArray]:
        """Rooms with a prompt this tick are mixed instead of relayed."""
        n = self._count
        prompted = np.zeros(layout.rooms, dtype=np.bool_)
        prompted[layout.room_index[self._has_private[:n] & self._active[:n]]] = True
        for room in self._broadcast:
            members = np.nonzero(self._active[:n] & (self._room[:n] == room))[0]
            prompted[layout.room_index[members]] = True
        suspended = relay & prompted[layout.room_index]
        if not suspended.any():
            return relay, layout.mixable, layout.hears_room
        mixable = layout.mixable | (suspended & ~self._muted[:n])
        hears_room = layout.hears_room | (suspended & ~self._deaf[:n])
        return relay & ~suspended, mixable, hears_room

    def _add_broadcasts(
        self, layout: _Layout, owners: IntArray, positions: IntArray, feeder_rooms: IntArray
    ) -> tuple[IntArray, IntArray, IntArray]:
        """Append room announcements as virtual talkers (owner -1) after the decoded talkers."""
        n = self._count
        extra_rows: list[int] = []
        extra_rooms: list[int] = []
        next_row = positions.size
        for room, frame in self._broadcast.items():
            members = np.nonzero(self._active[:n] & (self._room[:n] == room))[0]
            if not members.size:
                continue
            self._pcm[next_row] = frame
            extra_rows.append(next_row)
            extra_rooms.append(int(layout.room_index[members[0]]))
            next_row += 1
        if not extra_rows:
            return owners, positions, feeder_rooms
        count = len(extra_rows)
        all_owners = np.concatenate((owners, np.full(count, -1, dtype=np.intp)))
        all_positions = np.concatenate((positions, np.array(extra_rows, dtype=np.intp)))
        all_rooms = np.concatenate((feeder_rooms, np.array(extra_rooms, dtype=np.intp)))
        order = np.argsort(all_rooms, kind="stable")
        return all_owners[order], all_positions[order], all_rooms[order]

    def _build_layout(self) -> _Layout:
        n = self._count
        active = self._active[:n]
        slots = np.nonzero(active)[0]
        room_index = np.zeros(n, dtype=np.intp)
        room_ids, inverse, sizes = np.unique(
            self._room[slots], return_inverse=True, return_counts=True
        )
        room_index[slots] = inverse
        by_room = slots[np.argsort(inverse, kind="stable")]
        is_alaw = active & (self._codec[:n] == Codec.PCMA.payload_type)
        plain = ~self._muted[:n] & ~self._deaf[:n] & (self._gain[:n] == 1.0)

        relay_partner = np.full(n, -1, dtype=np.intp)
        if self.config.relay_two_party:
            pair_rooms = np.nonzero(sizes == 2)[0]
            if pair_rooms.size:
                starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))[pair_rooms]
                first, second = by_room[starts], by_room[starts + 1]
                ok = (
                    plain[first]
                    & plain[second]
                    & (self._codec[first] == self._codec[second])
                )
                relay_partner[first[ok]] = second[ok]
                relay_partner[second[ok]] = first[ok]
        relay = relay_partner >= 0
        gain_slots = np.nonzero(active & (self._gain[:n] != 1.0))[0]
        vad = self.config.vad
        threshold_power = FULL_SCALE_POWER * 10.0 ** (vad.threshold_dbov / 10.0)
        screen = {codec: screen_limit(codec, threshold_power) for codec in Codec}
        law = np.where(is_alaw, 1, 0)
        always_measure = active & (self._gain[:n] != 1.0)
        if vad.adaptive:  # the noise floor follows every leg's exact level
            always_measure = active.copy()
        quiet_power = np.array([screen[c][1] for c in Codec], np.float32)[law]
        quiet_level = np.zeros(n, dtype=np.float32)
        dbov(quiet_power, out=quiet_level)
        codecs = np.unique(self._codec[slots])
        codec = Codec.PCMA if codecs.size == 1 and codecs[0] == Codec.PCMA.payload_type else None
        codec = Codec.PCMU if codecs.size <= 1 and codec is None else codec
        mixable = active & ~self._muted[:n] & ~relay
        hears_room = active & ~self._deaf[:n] & ~relay
        hear_slots = np.nonzero(hears_room)[0]
        silence_rows = np.where(is_alaw, SILENCE_ROW[Codec.PCMA], SILENCE_ROW[Codec.PCMU])
        return _Layout(
            room_index=room_index,
            rooms=int(room_ids.size),
            by_room=by_room,
            relay_partner=relay_partner,
            mixable=mixable,
            hears_room=hears_room,
            is_alaw=is_alaw,
            alaw_slots=np.nonzero(is_alaw)[0],
            gain_slots=gain_slots,
            gain_values=self._gain[gain_slots].copy(),
            silence_rows=np.where(
                is_alaw, SILENCE_ROW[Codec.PCMA], SILENCE_ROW[Codec.PCMU]
            ).astype(np.intp),
            screen_key=np.array([SCREEN_KEY[c] for c in Codec], np.uint8)[law][:, None],
            screen_limit=np.array([screen[c][0] for c in Codec], np.uint8)[law][:, None],
            screen_codec=codec or Codec.PCMU,
            screen_lean_limit=screen[codec or Codec.PCMU][0],
            quiet_power=quiet_power,
            always_measure=always_measure,
            fast=codec is not None and not gain_slots.size and not vad.adaptive,
            pair_decode=ALAW_PAIR_DECODE if codec is Codec.PCMA else ULAW_PAIR_DECODE,
            encode=ALAW_ENCODE if codec is Codec.PCMA else ULAW_ENCODE,
            wide_encode=ALAW_WIDE_ENCODE if codec is Codec.PCMA else ULAW_WIDE_ENCODE,
            silence_row=SILENCE_ROW[codec if codec is not None else Codec.PCMU],
            in_order=bool(by_room.size == n and (by_room == np.arange(n)).all()),
            holes=bool(slots.size != n),
            all_mixable=bool((mixable == active).all()),
            any_deaf=bool((hears_room != active).any()),
            any_relay=bool(relay.any()),
            quiet_level=quiet_level,
            hear_slots=hear_slots,
            hear_all=bool(hear_slots.size == n),
            hear_rooms=room_index[hear_slots],
            hear_count=np.bincount(room_index[hear_slots], minlength=room_ids.size),
            deaf_slots=np.nonzero(active & ~hears_room)[0],
            base_rows=np.where(active, silence_rows, -1).astype(np.intp),
        )

    def _grow(self, capacity: int) -> None:
        """(Re)allocate every per-slot buffer for ``capacity`` legs, keeping current contents."""
        samples = self.config.samples
        fresh = self._capacity == 0
        self._payload = _grown(None if fresh else self._payload, (capacity, samples), np.uint8)
        self._has_input = _grown(None if fresh else self._has_input, (capacity,), np.bool_)
        self._active = _grown(None if fresh else self._active, (capacity,), np.bool_)
        self._room = _grown(None if fresh else self._room, (capacity,), np.int64)
        self._codec = _grown(None if fresh else self._codec, (capacity,), np.uint8)
        self._muted = _grown(None if fresh else self._muted, (capacity,), np.bool_)
        self._deaf = _grown(None if fresh else self._deaf, (capacity,), np.bool_)
        self._gain = _grown(None if fresh else self._gain, (capacity,), np.float32)
        self._private = _grown(None if fresh else self._private, (capacity, samples), np.int16)
        self._has_private = _grown(None if fresh else self._has_private, (capacity,), np.bool_)
        # decoded talkers then announcements; the last row is always zero (padding)
        self._pcm = np.zeros((2 * capacity + 1, samples), dtype=np.int16)
        self._zero_row = 2 * capacity
        self._codes = np.zeros((capacity, samples), dtype=np.uint8)
        self._decoded = np.zeros((capacity, samples), dtype=np.int16)
        self._floats = np.zeros((capacity, samples), dtype=np.float32)
        self._masked = np.zeros((capacity, samples), dtype=np.uint8)
        self._loud_code = np.zeros((capacity, samples), dtype=np.bool_)
        self._any_loud = np.zeros(capacity, dtype=np.bool_)
        self._any_word = np.zeros(capacity, dtype=np.uint64)
        words = samples // 8 if samples % 8 == 0 else 0
        self._screen_words = np.zeros((capacity, words), dtype=np.uint64)
        self._screen_hit = np.zeros((capacity, words), dtype=np.bool_)
        self._measured_power = np.zeros(capacity, dtype=np.float32)
        self._power = np.zeros(capacity, dtype=np.float32)
        self._sent = np.zeros(capacity, dtype=np.bool_)
        # a padded bucket holds at most 2x the talkers (+ announcements)
        self._scratch16 = np.zeros((4 * capacity + 2) * samples, dtype=np.int16)
        self._scratch32 = np.zeros((4 * capacity + 2) * samples, dtype=np.int32)
        self._total = np.zeros((2 * capacity + 1) * samples, dtype=np.int32)
        self._offset_total = np.zeros((2 * capacity + 1) * samples, dtype=np.int32)
        self._vad.resize(capacity)
        self._capacity = capacity
        self._layout = None

    def _reserve_out(self, rows: int) -> None:
        if rows <= self._out.shape[0]:
            return
        size = max(rows, 2 * self._out.shape[0])
        out = np.empty((size, self.config.samples), dtype=np.uint8)
        out[SILENCE_ROW[Codec.PCMU]] = Codec.PCMU.silence_byte
        out[SILENCE_ROW[Codec.PCMA]] = Codec.PCMA.silence_byte
        self._out = out

    def _frame(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        frame = np.asarray(pcm)
        if frame.dtype != np.int16 or frame.shape != (self.config.samples,):
            raise ValueError(f"a prompt frame must be int16 of shape ({self.config.samples},)")
        return frame

    def _check(self, slot: int) -> None:
        if not (0 <= slot < self._count and self._active[slot]):
            raise KeyError(f"slot {slot} is not in use")
