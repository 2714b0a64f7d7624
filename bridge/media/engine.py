"""The media engine: every leg's RTP session, jitter buffer, digit detection and prompts, and
the mixer, advanced by one tick per 20 ms (sans-I/O; design notes §4-5).

The runtime feeds datagrams (:meth:`MediaEngine.receive_rtp`, :meth:`receive_rtcp`), SIP INFO
digits (:meth:`add_info_digit`) and calls :meth:`tick` on the media clock; each tick returns
the datagrams to send, one RTP packet per sending leg (silence when nobody talks, so trunks
never see a silent call) plus RTCP when due. :meth:`events` drains what happened: digits,
talking changes, finished prompts.

Digits never reach the other participants: while an RFC 4733 event is active, while the
in-band detector hears a tone, and for ``dtmf_mute_ticks`` after a digit, the leg's audio is
left out of the mix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from bridge.codecs.g711 import Codec
from bridge.media.digits import DigitMergePolicy, DigitMerger
from bridge.media.inband_dtmf import InbandDtmfBank, InbandDtmfConfig
from bridge.media.mixer import Mixer, MixerConfig
from bridge.media.prompts import PromptPlayer
from bridge.rtp.dtmf import (
    DigitReceived,
    DigitStarted,
    DtmfError,
    Rfc4733Receiver,
    Rfc4733ReceiverConfig,
)
from bridge.rtp.jitter import Frame, FrameKind
from bridge.rtp.packet import RtpPacket
from bridge.rtp.session import PayloadFormat, RtpSession, SessionConfig

Address = tuple[str, int]
FRAME_SAMPLES = 160
RTCP_RECHECK = 1.0  # seconds before a due RTCP report of a leg that is not sending is retried
InbandPolicy = Literal["always", "auto", "off"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Tuning of the engine.

    ``inband_dtmf``: ``always`` runs the tone detector on every leg until that leg sends an
    RFC 4733 event; ``auto`` only on legs that negotiated no telephone-event; ``off`` never.
    """

    session: SessionConfig = field(default_factory=SessionConfig)
    mixer: MixerConfig = field(default_factory=MixerConfig)
    rfc4733: Rfc4733ReceiverConfig = field(default_factory=Rfc4733ReceiverConfig)
    merge: DigitMergePolicy = field(default_factory=DigitMergePolicy)
    inband: InbandDtmfConfig = field(default_factory=InbandDtmfConfig)
    inband_dtmf: InbandPolicy = "always"
    dtmf_mute_ticks: int = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class LegMedia:
    """What the SDP negotiation decided for one leg (see bridge.sdp.negotiate)."""

    codec: Codec
    payload_type: int
    telephone_event_pt: int | None
    remote: Address | None  # None: not known yet (latched from the first packet)
    sends: bool = True  # False on hold (the peer is sendonly/inactive) or c=0.0.0.0


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LegDigitReceived:
    leg: str
    digit: str
    source: str  # "rfc4733" | "info" | "inband"


@dataclass(frozen=True, slots=True, kw_only=True)
class TalkingChanged:
    leg: str
    talking: bool
    level_dbov: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptFinished:
    """The player of ``target`` (a leg id, or ``room:NAME``) finished clip number ``count``
    (counted from 1 since the player was created; compare with the ticket of ``play``)."""

    target: str
    count: int


MediaEvent = LegDigitReceived | TalkingChanged | PromptFinished


@dataclass(frozen=True, slots=True, kw_only=True)
class LegTransfer:
    """A leg's media state as it leaves one engine for another (another process): plain,
    picklable values. The new engine continues the same RTP stream (RFC 3550 §5.1: same SSRC,
    the next sequence number, a timestamp on the same sampling clock), so the peer sees no
    change. Jitter buffer, DTMF and prompt state start afresh."""

    leg_id: str
    room: str
    media: LegMedia
    remote: Address | None  # where RTP goes now (the latched source or the SDP address)
    ssrc: int
    sequence: int
    timestamp: int
    last_send: float | None  # monotonic time of the last RTP packet sent
    cname: str
    muted: bool
    deaf: bool
    gain: float
    packets_sent: int
    octets_sent: int
    rfc4733_seen: bool = False  # it sent RFC 4733 digits: in-band detection stays off


@dataclass(slots=True)
class EngineCounters:
    ticks: int = 0
    packets_sent: int = 0
    rtcp_sent: int = 0
    bad_frames: int = 0  # frames of the wrong size (ptime other than 20 ms)
    bad_events: int = 0  # malformed telephone-event payloads
    digits: int = 0


# -- internal state ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Leg:
    leg_id: str
    slot: int
    room: _Room
    media: LegMedia
    session: RtpSession
    rtp_handle: object
    rtcp_handle: object
    rfc4733: Rfc4733Receiver
    merger: DigitMerger
    player: PromptPlayer | None = None
    reported_count: int = 0
    mute_ticks: int = 0
    inband: bool = False
    held_back: bool = False  # its last audio frame was kept out of the mix (DTMF)
    muted: bool = False  # the mixer flags, re-applied when a codec change moves the slot
    deaf: bool = False
    gain: float = 1.0
    # Per-tick shortcuts: the session's jitter buffer pop (RtpSession.pop_frame without the
    # extra call) and ``media.sends``.
    pop_frame: Callable[[], Frame] = field(init=False)
    sends: bool = field(init=False)

    def __post_init__(self) -> None:
        self.pop_frame = self.session.jitter.pop
        self.sends = self.media.sends


@dataclass(slots=True, eq=False)
class _Room:
    name: str
    index: int
    legs: set[str] = field(default_factory=set)
    player: PromptPlayer | None = None
    reported_count: int = 0


Outgoing = tuple[object, bytes, Address]


class MediaEngine:
    """All legs and rooms of one media process."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config if config is not None else EngineConfig()
        self.mixer = Mixer(self.config.mixer)
        self.counters = EngineCounters()
        self._legs: dict[str, _Leg] = {}
        self._by_slot: dict[int, _Leg] = {}
        self._rooms: dict[str, _Room] = {}
        self._room_ids = 0
        self._events: list[MediaEvent] = []
        self._dtmf_busy: set[_Leg] = set()  # legs with a DTMF timer or mute hangover
        self._players: set[_Leg] = set()  # legs with an active private player
        self._room_players: set[_Room] = set()
        self._inband_bank = InbandDtmfBank(self.mixer.capacity, self.config.inband)
        self._inband_dirty = True
        self._inband_slots: dict[Codec, npt.NDArray[np.intp]] = {}
        self._rtcp_next = float("inf")  # earliest RTCP deadline of any leg (RFC 3550 §6.2)
        self._silence = {codec: np.full(FRAME_SAMPLES, codec.silence_byte, np.uint8)
                         for codec in Codec}

    # -- legs and rooms ----------------------------------------------------------------------

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self._legs

    @property
    def leg_count(self) -> int:
        return len(self._legs)

    def session(self, leg_id: str) -> RtpSession:
        """The leg's RTP session, for its counters and statistics (read them, don't drive it:
        the engine feeds and ticks it). Raises ``KeyError`` for an unknown leg."""
        return self._legs[leg_id].session

    def room_legs(self, room: str) -> set[str]:
        r = self._rooms.get(room)
        return set(r.legs) if r is not None else set()

    def add_leg(
        self,
        leg_id: str,
        room: str,
        media: LegMedia,
        *,
        ssrc: int,
        now: float,
        rtp_handle: object = None,
        rtcp_handle: object = None,
        cname: str = "bridge",
        sequence: int = 0,
        timestamp: int = 0,
        last_send: float | None = None,
    ) -> None:
        """Add a leg to ``room`` (created on first use). The handles are opaque to the engine
        and come back with every datagram to send (the runtime's sockets). ``sequence``,
        ``timestamp`` and ``last_send`` continue a stream (see :meth:`import_leg`)."""
        if leg_id in self._legs:
            raise ValueError(f"leg {leg_id!r} exists")
        r = self._rooms.get(room)
        if r is None:
            self._room_ids += 1
            r = self._rooms[room] = _Room(name=room, index=self._room_ids)
        session = RtpSession(
            ssrc=ssrc,
            payload=PayloadFormat(audio_pt=media.payload_type,
                                  event_pt=media.telephone_event_pt),
            remote=media.remote,
            now=now,
            cname=cname,
            config=self.config.session,
            initial_sequence=sequence,
            initial_timestamp=timestamp,
            last_send=last_send,
        )
        capacity = self.mixer.capacity
        slot = self.mixer.add_leg(r.index, media.codec)
        if self.mixer.capacity != capacity:
            self._grow_inband()
        self._inband_bank.reset(slot)
        leg = _Leg(
            leg_id=leg_id,
            slot=slot,
            room=r,
            media=media,
            session=session,
            rtp_handle=rtp_handle,
            rtcp_handle=rtcp_handle,
            rfc4733=Rfc4733Receiver(self.config.rfc4733),
            merger=DigitMerger(self.config.merge),
        )
        leg.inband = self._wants_inband(leg)
        self._rtcp_next = min(self._rtcp_next, session.next_timer())
        self._legs[leg_id] = leg
        self._by_slot[slot] = leg
        r.legs.add(leg_id)
        self._inband_dirty = True

    def update_leg(self, leg_id: str, media: LegMedia) -> None:
        """Apply a renegotiation (re-INVITE): new remote address, hold/unhold, codec."""
        leg = self._legs[leg_id]
        if media.codec is not leg.media.codec:
            self._drop_from_mixer(leg)
            capacity = self.mixer.capacity
            leg.slot = slot = self.mixer.add_leg(leg.room.index, media.codec)
            if self.mixer.capacity != capacity:
                self._grow_inband()
            self._inband_bank.reset(slot)
            self._by_slot[slot] = leg
            self.mixer.set_muted(slot, leg.muted)
            self.mixer.set_deaf(slot, leg.deaf)
            self.mixer.set_gain(slot, leg.gain)
            leg.session.jitter.reset()  # queued frames are in the old codec
        leg.session.set_payload_format(
            PayloadFormat(audio_pt=media.payload_type, event_pt=media.telephone_event_pt)
        )
        if media.remote is not None and media.remote != leg.session.remote:
            leg.session.set_remote(media.remote)
        leg.media = media
        leg.sends = media.sends
        leg.inband = self._wants_inband(leg)
        self._inband_dirty = True

    def move_leg(self, leg_id: str, room: str) -> None:
        """Move a leg to another room (from its IVR room into the conference, or back to a
        room of its own to wait). Its RTP session, digits and private prompts carry on."""
        leg = self._legs[leg_id]
        old = leg.room
        if old.name == room:
            return
        new = self._rooms.get(room)
        if new is None:
            self._room_ids += 1
            new = self._rooms[room] = _Room(name=room, index=self._room_ids)
        self._drop_from_mixer(leg)
        capacity = self.mixer.capacity
        leg.slot = slot = self.mixer.add_leg(new.index, leg.media.codec)
        if self.mixer.capacity != capacity:
            self._grow_inband()
        self._inband_bank.reset(slot)
        self._by_slot[slot] = leg
        self.mixer.set_muted(slot, leg.muted)
        self.mixer.set_deaf(slot, leg.deaf)
        self.mixer.set_gain(slot, leg.gain)
        old.legs.discard(leg_id)
        if not old.legs:
            self._room_players.discard(old)
            del self._rooms[old.name]
        new.legs.add(leg_id)
        leg.room = new
        self._inband_dirty = True

    def remove_leg(self, leg_id: str, now: float, wallclock: float) -> list[Outgoing]:
        """Remove a leg; returns its RTCP BYE (RFC 3550 §6.6) to send."""
        leg = self._legs.pop(leg_id, None)
        if leg is None:
            return []
        self._forget(leg)
        out: list[Outgoing] = []
        rtcp_remote = leg.session.remote_rtcp
        if rtcp_remote is not None and leg.session.counters.packets_sent:
            out.append((leg.rtcp_handle, leg.session.build_bye(now, wallclock), rtcp_remote))
        return out

    def _forget(self, leg: _Leg) -> None:
        """Take a leg (already out of ``_legs``) out of the mixer, its room and the tick sets."""
        self._drop_from_mixer(leg)
        self._dtmf_busy.discard(leg)
        self._players.discard(leg)
        room = leg.room
        room.legs.discard(leg.leg_id)
        if not room.legs:
            self._room_players.discard(room)
            del self._rooms[room.name]
        self._inband_dirty = True

    def export_leg(self, leg_id: str) -> LegTransfer:
        """Take a leg out of this engine (no RTCP BYE: its stream goes on elsewhere) and return
        what :meth:`import_leg` needs to continue it. Raises ``KeyError`` for an unknown leg."""
        leg = self._legs[leg_id]
        session = leg.session
        state = LegTransfer(
            leg_id=leg_id, room=leg.room.name, media=leg.media, remote=session.remote,
            ssrc=session.ssrc, sequence=session.next_sequence,
            timestamp=session.current_timestamp, last_send=session.last_send,
            cname=session.cname, muted=leg.muted, deaf=leg.deaf, gain=leg.gain,
            packets_sent=session.counters.packets_sent, octets_sent=session.counters.octets_sent,
            rfc4733_seen=leg.merger.rfc4733_seen,
        )
        self._forget(self._legs.pop(leg_id))  # no BYE: the stream goes on elsewhere
        return state

    def import_leg(self, state: LegTransfer, *, now: float, rtp_handle: object = None,
                   rtcp_handle: object = None) -> None:
        """Add a leg exported by :meth:`export_leg` (of this or another engine)."""
        self.add_leg(state.leg_id, state.room,
                     dataclasses.replace(state.media, remote=state.remote),
                     ssrc=state.ssrc, now=now, rtp_handle=rtp_handle, rtcp_handle=rtcp_handle,
                     cname=state.cname, sequence=state.sequence, timestamp=state.timestamp,
                     last_send=state.last_send)
        leg = self._legs[state.leg_id]
        counters = leg.session.counters
        counters.packets_sent, counters.octets_sent = state.packets_sent, state.octets_sent
        if state.rfc4733_seen:
            leg.merger.rfc4733_proven()
            leg.inband = self._wants_inband(leg)
        if state.muted:
            self.set_muted(state.leg_id, True)
        if state.deaf:
            self.set_deaf(state.leg_id, True)
        if state.gain != 1.0:
            self.set_gain(state.leg_id, state.gain)

    def _drop_from_mixer(self, leg: _Leg) -> None:
        self.mixer.remove_leg(leg.slot)
        self._inband_bank.reset(leg.slot)
        self._by_slot.pop(leg.slot, None)

    def _wants_inband(self, leg: _Leg) -> bool:
        policy = self.config.inband_dtmf
        if policy == "off":
            return False
        if policy == "auto" and leg.media.telephone_event_pt is not None:
            return False
        return leg.merger.inband_enabled

    def _grow_inband(self) -> None:
        """The mixer grew: a larger detector bank; the old legs keep their place (their
        detector state restarts, which at worst delays a digit being pressed right now)."""
        self._inband_bank = InbandDtmfBank(self.mixer.capacity, self.config.inband)
        self._inband_dirty = True

    # -- controls ------------------------------------------------------------------------------

    def set_muted(self, leg_id: str, muted: bool) -> None:
        leg = self._legs[leg_id]
        self.mixer.set_muted(leg.slot, muted)
        leg.muted = muted

    def set_deaf(self, leg_id: str, deaf: bool) -> None:
        leg = self._legs[leg_id]
        self.mixer.set_deaf(leg.slot, deaf)
        leg.deaf = deaf

    def set_gain(self, leg_id: str, gain: float) -> None:
        leg = self._legs[leg_id]
        self.mixer.set_gain(leg.slot, gain)
        leg.gain = gain

    def play(self, leg_id: str, clips: Iterable[npt.NDArray[np.int16]], *,
             loop: bool = False) -> int:
        """Queue clips privately to one leg; returns the count the player reaches when they
        have all played (compare with :class:`PromptFinished`)."""
        leg = self._legs[leg_id]
        if leg.player is None:
            leg.player = PromptPlayer()
        ticket = self._enqueue(leg.player, clips, loop)
        self._players.add(leg)
        return ticket

    def play_room(self, room: str, clips: Iterable[npt.NDArray[np.int16]], *,
                  loop: bool = False) -> int:
        """Queue clips to every leg of ``room`` (a room-wide announcement or tone)."""
        r = self._rooms[room]
        if r.player is None:
            r.player = PromptPlayer()
        ticket = self._enqueue(r.player, clips, loop)
        self._room_players.add(r)
        return ticket

    @staticmethod
    def _enqueue(player: PromptPlayer, clips: Iterable[npt.NDArray[np.int16]],
                 loop: bool) -> int:
        ticket = player.finished_count + player.pending
        for clip in clips:
            ticket = player.enqueue(clip, loop=loop)
        return ticket

    def stop_prompts(self, leg_id: str) -> None:
        """Barge-in: drop what is playing or queued for the leg."""
        leg = self._legs.get(leg_id)
        if leg is not None and leg.player is not None:
            leg.player.stop()

    def prompt_count(self, target: str) -> int:
        """How many clips the target's player has finished (``room:NAME`` for a room)."""
        if target.startswith("room:"):
            r = self._rooms.get(target[5:])
            player = r.player if r is not None else None
        else:
            leg = self._legs.get(target)
            player = leg.player if leg is not None else None
        return player.finished_count if player is not None else 0

    # -- input ---------------------------------------------------------------------------------

    def receive_rtp(self, leg_id: str, data: bytes, addr: Address, now: float) -> None:
        leg = self._legs.get(leg_id)
        if leg is None:
            return
        packet = leg.session.receive_media(data, addr, now)
        if packet is None:  # audio (queued in the jitter buffer) or dropped
            return
        self._receive_event(leg, packet, now)

    def rtp_receiver(self, leg_id: str) -> Callable[[bytes, Address, float], RtpPacket | None]:
        """The per-packet half of :meth:`receive_rtp` for one leg, for an I/O layer that reads
        many packets per tick: call it with each datagram and pass what it returns (an RFC 4733
        packet, rarely) to :meth:`receive_event`. Valid while the leg is in this engine."""
        return self._legs[leg_id].session.receive_media

    def receive_event(self, leg_id: str, packet: RtpPacket, now: float) -> None:
        """A telephone-event packet that :meth:`rtp_receiver`'s function returned."""
        leg = self._legs.get(leg_id)
        if leg is not None:
            self._receive_event(leg, packet, now)

    def _receive_event(self, leg: _Leg, packet: RtpPacket, now: float) -> None:
        try:
            reports = leg.rfc4733.receive(
                marker=packet.marker, timestamp=packet.timestamp, sequence=packet.sequence,
                payload=packet.payload, now=now,
            )
        except DtmfError:
            self.counters.bad_events += 1
            return
        for report in reports:
            self._digit_report(leg, report, now)
        self._dtmf_busy.add(leg)

    def receive_rtcp(self, leg_id: str, data: bytes, addr: Address, now: float) -> None:
        leg = self._legs.get(leg_id)
        if leg is not None:
            leg.session.receive_rtcp(data, addr, now)

    def add_info_digit(self, leg_id: str, digit: str, duration_ms: int | None,
                       now: float) -> None:
        """A digit from SIP INFO joins the same stream as RFC 4733 and in-band digits."""
        leg = self._legs.get(leg_id)
        if leg is None:
            return
        report = DigitReceived(digit=digit, source="info", start=now,
                               duration_ms=duration_ms or 100)
        self._digit_report(leg, report, now)
        self._dtmf_busy.add(leg)

    def _digit_report(self, leg: _Leg, report: DigitStarted | DigitReceived, now: float) -> None:
        was_inband = leg.merger.inband_enabled
        for digit in leg.merger.add(report, now):
            self._emit_digit(leg, digit)
        if was_inband != leg.merger.inband_enabled:
            leg.inband = self._wants_inband(leg)
            self._inband_dirty = True

    def _emit_digit(self, leg: _Leg, digit: DigitReceived) -> None:
        self.counters.digits += 1
        leg.mute_ticks = self.config.dtmf_mute_ticks
        self._events.append(LegDigitReceived(leg=leg.leg_id, digit=digit.digit,
                                             source=digit.source))

    def events(self) -> list[MediaEvent]:
        out, self._events = self._events, []
        return out

    # -- the tick ------------------------------------------------------------------------------

    def tick(self, now: float, wallclock: float) -> list[Outgoing]:
        """Advance every leg by one 20 ms frame; return the datagrams to send."""
        self.counters.ticks += 1
        if not self._legs:  # e.g. a main process whose callers all sit in media workers
            return []
        mixer = self.mixer
        payload_in = mixer.payload_in
        has_input = mixer.has_input
        silence = self._silence
        # Frames at unit gain are copied into the mixer in one vectorised write after the loop.
        slots: list[int] = []
        payloads: list[bytes] = []
        audio, repeat, silent = FrameKind.AUDIO, FrameKind.REPEAT, FrameKind.SILENCE
        for leg in self._legs.values():
            kind, payload, gain, _, _ = leg.pop_frame()
            if (
                kind is silent
                or payload is None
                or len(payload) != FRAME_SAMPLES
                or (kind is repeat and leg.held_back)  # never conceal a DTMF tone
            ):
                if payload is not None and kind is audio:
                    self.counters.bad_frames += 1  # another ptime: counted once, not played
                if leg.inband:
                    payload_in[leg.slot] = silence[leg.media.codec]
                continue
            if kind is audio:
                leg.held_back = False
            if gain == 1.0:
                slots.append(leg.slot)
                payloads.append(payload)
                continue
            row = payload_in[leg.slot]
            row[:] = np.frombuffer(payload, np.uint8)
            codec = leg.media.codec
            pcm = codec.decode(row).astype(np.float32) * gain
            codec.encode(pcm.astype(np.int16), out=row)
            has_input[leg.slot] = True
        if slots:
            payload_in[slots] = np.frombuffer(b"".join(payloads), np.uint8).reshape(
                len(slots), FRAME_SAMPLES)
            has_input[slots] = True
        self._dtmf_tick(now)
        if self._inband_dirty:
            self._rebuild_inband()
        if self._inband_slots:
            self._inband_tick(now)
        self._prompts_tick()
        out = mixer.mix()
        for slot in out.started:
            self._talking(int(slot), True, float(out.level_dbov[slot]))
        for slot in out.stopped:
            self._talking(int(slot), False, float(out.level_dbov[slot]))
        # One copy of the encoded frames and the row table as Python objects: slicing bytes
        # per leg is cheaper than indexing numpy per leg.
        blob = out.frames.tobytes()
        rows = out.rows.tolist()
        sent: list[Outgoing] = []
        append = sent.append
        for leg in self._legs.values():
            session = leg.session
            remote = session.remote
            if remote is None or not leg.sends:
                continue
            start = rows[leg.slot] * FRAME_SAMPLES
            append((leg.rtp_handle,
                    session.build_audio(blob[start : start + FRAME_SAMPLES], now), remote))
        self.counters.packets_sent += len(sent)  # RTP only: RTCP counts in rtcp_sent
        if now >= self._rtcp_next:
            self._rtcp_tick(now, wallclock, append)
        return sent

    def _rtcp_tick(self, now: float, wallclock: float,
                   append: Callable[[Outgoing], None]) -> None:
        """RTCP for every sending leg whose report is due (RFC 3550 §6.2), after the tick's RTP;
        then the earliest deadline, so ticks with nothing due skip the per-leg check. A leg
        due but not sending (on hold, no address yet) reports once it sends: it is looked at
        again after ``RTCP_RECHECK`` seconds, not every tick (a long hold must not put a pass
        over every leg into every 20 ms tick)."""
        earliest = float("inf")
        for leg in self._legs.values():
            session = leg.session
            deadline = session.next_timer()
            if deadline <= now:
                rtcp_remote = session.remote_rtcp
                if session.remote is None or not leg.media.sends or rtcp_remote is None:
                    earliest = min(earliest, now + RTCP_RECHECK)
                    continue
                append((leg.rtcp_handle, session.build_rtcp(now, wallclock), rtcp_remote))
                self.counters.rtcp_sent += 1
                deadline = session.next_timer()
            earliest = min(earliest, deadline)
        self._rtcp_next = earliest

    def _talking(self, slot: int, talking: bool, level: float) -> None:
        leg = self._by_slot.get(slot)
        if leg is not None:
            self._events.append(TalkingChanged(leg=leg.leg_id, talking=talking,
                                               level_dbov=level))

    def _dtmf_tick(self, now: float) -> None:
        """Digit timers, and keeping digits out of the mix."""
        if not self._dtmf_busy:
            return
        has_input = self.mixer.has_input
        done: list[_Leg] = []
        for leg in self._dtmf_busy:
            deadline = leg.rfc4733.next_timer()
            if deadline is not None and deadline <= now:
                for report in leg.rfc4733.handle_timer(now):
                    self._digit_report(leg, report, now)
            deadline = leg.merger.next_timer()
            if deadline is not None and deadline <= now:
                for digit in leg.merger.handle_timer(now):
                    self._emit_digit(leg, digit)
            if leg.rfc4733.event_active:
                has_input[leg.slot] = False
                leg.held_back = True
            elif leg.mute_ticks > 0:
                leg.mute_ticks -= 1
                has_input[leg.slot] = False
                leg.held_back = True
            elif leg.rfc4733.next_timer() is None and leg.merger.next_timer() is None:
                done.append(leg)
        for leg in done:
            self._dtmf_busy.discard(leg)

    def _rebuild_inband(self) -> None:
        by_codec: dict[Codec, list[int]] = {}
        for leg in self._legs.values():
            if leg.inband:
                by_codec.setdefault(leg.media.codec, []).append(leg.slot)
        self._inband_slots = {codec: np.array(sorted(slots), dtype=np.intp)
                              for codec, slots in by_codec.items()}
        self._inband_dirty = False

    def _inband_tick(self, now: float) -> None:
        mixer = self.mixer
        bank = self._inband_bank
        has_input = mixer.has_input
        for codec, slots in self._inband_slots.items():
            pcm = codec.decode(mixer.payload_in[slots])
            for slot, report in bank.detect_batch(pcm, now, rows=slots):
                leg = self._by_slot.get(slot)
                if leg is not None:
                    self._digit_report(leg, report, now)
                    self._dtmf_busy.add(leg)
            active = slots[bank.tone_active[slots]]
            if active.size:
                has_input[active] = False
                for slot in active.tolist():
                    held = self._by_slot.get(slot)
                    if held is not None:
                        held.held_back = True

    def _prompts_tick(self) -> None:
        mixer = self.mixer
        for room in list(self._room_players):
            frame = self._next_prompt_frame(room, f"room:{room.name}")
            if frame is not None:
                mixer.play_room(room.index, frame)
            if room.player is None or room.player.done:
                self._room_players.discard(room)
        for leg in list(self._players):
            frame = self._next_prompt_frame(leg, leg.leg_id)
            if frame is not None:
                mixer.play_private(leg.slot, frame)
            if leg.player is None or leg.player.done:
                self._players.discard(leg)

    def _next_prompt_frame(self, holder: _Leg | _Room,
                           target: str) -> npt.NDArray[np.int16] | None:
        """One frame of the holder's player; reports finished clips."""
        player = holder.player
        if player is None:
            return None
        frame = player.next_frame()
        if player.finished_count != holder.reported_count:
            holder.reported_count = player.finished_count
            self._events.append(PromptFinished(target=target, count=player.finished_count))
        return frame
