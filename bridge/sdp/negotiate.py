"""RFC 3264 offer/answer for one G.711 audio stream, as pure functions.

* :func:`answer` answers an inbound offer (UAS): it keeps the offer's m-line order (§6), accepts
  the first usable audio stream and rejects every other stream with port 0 (§6), picks the first
  offered codec we support (the offerer's preference order, §6.1) and answers with the offer's
  payload type numbers (§6.1: linphone uses 96 for telephone-event, most others 101).
  No common codec raises :class:`NoCommonCodecError` (``status`` 488, RFC 3261 §13.3.1.3).
* :func:`reanswer` answers a re-INVITE offer in an existing session (§8): same origin, version
  incremented when the answer changes, and a :class:`MediaChange` saying what moved (remote
  address, hold/unhold, codec).
* :func:`offer` builds our own offer for dial-out and :func:`accept_answer` reads the answer
  (UAC), raising :class:`InvalidAnswerError` when it picks a codec we did not offer.

Packet time: we always send G.711 in 20 ms frames and answer ``a=ptime:20`` (RFC 8866 §6.4:
ptime is what the writer wants to receive). An offer asking for a different ptime is still
answered with 20 ms unless :attr:`AnswerPolicy.require_offer_ptime` is set, in which case it is
refused with 488. An offer whose ``a=maxptime`` is below 20 ms is refused with 488: we could not
send within it.

Hold (RFC 3264 §8.4): an offer that is ``sendonly`` or ``inactive``, or carries the RFC 2543
connection address 0.0.0.0, puts us on hold; the answer is recvonly / inactive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

from bridge.sdp.model import (
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    Rtcp,
    SdpError,
    SessionDescription,
    Timing,
)

__all__ = [
    "PCMA",
    "PCMU",
    "AnswerPolicy",
    "AnswerResult",
    "Codec",
    "InvalidAnswerError",
    "MediaChange",
    "NegotiatedMedia",
    "NoCommonCodec",
    "NoCommonCodecError",
    "ReanswerResult",
    "StaticCodec",
    "accept_answer",
    "answer",
    "offer",
    "reanswer",
]

TELEPHONE_EVENT = "telephone-event"
#: Transport protocols we can speak (plain RTP; AVPF is answered as AVPF without feedback).
RTP_PROFILES = ("RTP/AVP", "RTP/AVPF")

# RFC 3551 §6 table 4: static audio payload types (used when an offer omits a=rtpmap).
_STATIC_AUDIO: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    5: ("DVI4", 8000),
    6: ("DVI4", 16000),
    7: ("LPC", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    10: ("L16", 44100),
    11: ("L16", 44100),
    12: ("QCELP", 8000),
    13: ("CN", 8000),
    14: ("MPA", 90000),
    15: ("G728", 8000),
    16: ("DVI4", 11025),
    17: ("DVI4", 22050),
    18: ("G729", 8000),
}


class Codec(Protocol):
    """What negotiation needs to know of a codec. ``bridge.codecs.g711.Codec.PCMU`` / ``.PCMA``
    satisfy it, and so do :data:`PCMU` / :data:`PCMA` here."""

    @property
    def encoding_name(self) -> str: ...

    @property
    def payload_type(self) -> int: ...

    @property
    def clock_rate(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StaticCodec:
    """A codec with a static RTP payload type (RFC 3551 §6)."""

    encoding_name: str
    payload_type: int
    clock_rate: int = 8000


PCMU = StaticCodec("PCMU", 0)
PCMA = StaticCodec("PCMA", 8)


class NoCommonCodecError(SdpError):
    """No stream of the offer (or answer) can be used: answer 488 Not Acceptable Here."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=488)


NoCommonCodec = NoCommonCodecError  # the name used in the design brief


class InvalidAnswerError(SdpError):
    """The answer to our offer breaks RFC 3264 §6 (codec we did not offer, wrong m-line count).
    The UAC ACKs and then ends the call (BYE with Reason 488)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=488)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerPolicy:
    """Tuning of :func:`answer`, passed in (never module globals).

    ``direction``: what we are willing to do (a listen-only leg could use sendonly); the answer's
    direction is the offer's reversed, intersected with this. ``ptime``: what we send and ask
    for. ``require_offer_ptime``: refuse (488) offers whose a=ptime differs from ``ptime``.
    """

    direction: Direction = Direction.SENDRECV
    ptime: int = 20
    require_offer_ptime: bool = False
    telephone_event_events: str = "0-15"
    session_name: str = "-"
    origin_username: str = "-"
    profiles: tuple[str, ...] = RTP_PROFILES


@dataclass(frozen=True, slots=True, kw_only=True)
class NegotiatedMedia:
    """The outcome of offer/answer that the media engine uses for one leg.

    ``remote_address``/``remote_port``: where to send RTP (port 0: stream rejected).
    ``codec``/``payload_type``: 'PCMU' or 'PCMA' and the payload type number to send and
    expect. ``telephone_event_pt``: RFC 4733 payload type or None. ``ptime``: ms per packet we
    send. ``direction``: ours. ``hold``: the remote end put the stream on hold (sendonly,
    inactive or c=0.0.0.0). ``remote_rtcp_*``: from a=rtcp (RFC 3605) or port + 1.
    ``media_index``: position of the audio m-line in the SDP.
    """

    remote_address: str
    remote_port: int
    codec: str
    payload_type: int
    clock_rate: int = 8000
    telephone_event_pt: int | None = None
    ptime: int = 20
    remote_ptime: float | None = None
    direction: Direction = Direction.SENDRECV
    remote_direction: Direction = Direction.SENDRECV
    hold: bool = False
    remote_rtcp_address: str
    remote_rtcp_port: int
    media_index: int = 0

    @property
    def rejected(self) -> bool:
        return self.remote_port == 0

    @property
    def sends(self) -> bool:
        """Whether we should send RTP now (also false towards an RFC 2543 0.0.0.0 hold)."""
        return self.direction.sends and not self.rejected

    @property
    def receives(self) -> bool:
        return self.direction.receives and not self.rejected


class AnswerResult(NamedTuple):
    """The answer SDP to send and the media parameters to apply."""

    sdp: SessionDescription
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaChange:
    """What a re-INVITE changed compared with the previous negotiation."""

    remote_address_changed: bool = False
    hold_started: bool = False
    hold_ended: bool = False
    codec_changed: bool = False
    direction_changed: bool = False
    telephone_event_changed: bool = False
    sdp_changed: bool = False  # our answer differs from the previous one (version incremented)

    @property
    def any(self) -> bool:
        return (
            self.remote_address_changed
            or self.hold_started
            or self.hold_ended
            or self.codec_changed
            or self.direction_changed
            or self.telephone_event_changed
        )


class ReanswerResult(NamedTuple):
    sdp: SessionDescription
    media: NegotiatedMedia
    changes: MediaChange


# --------------------------------------------------------------------------------------------
# helpers


def _encoding(media: MediaDescription, fmt: str) -> tuple[int, str, int] | None:
    """(payload type, upper-case encoding name, clock rate) of an RTP format, or None."""
    if not fmt.isascii() or not fmt.isdigit() or len(fmt) > 3:
        return None
    pt = int(fmt)
    if pt > 127:
        return None
    rtpmap = media.rtpmaps.get(pt)
    if rtpmap is not None:
        return pt, rtpmap.encoding.upper(), rtpmap.clock_rate
    static = _STATIC_AUDIO.get(pt)
    if static is None:
        return None
    return pt, static[0], static[1]


def _choose_codec(
    media: MediaDescription, supported: Sequence[Codec]
) -> tuple[int, Codec] | None:
    """The first offered format (offerer's order) that is one of ``supported``."""
    wanted = {(c.encoding_name.upper(), c.clock_rate): c for c in supported}
    for fmt in media.formats:
        found = _encoding(media, fmt)
        if found is None:
            continue
        pt, name, rate = found
        codec = wanted.get((name, rate))
        if codec is not None:
            return pt, codec
    return None


def _telephone_event_pt(media: MediaDescription, clock_rate: int) -> int | None:
    """The payload type of telephone-event at ``clock_rate`` (RFC 4733 §7.1.1), if offered."""
    for fmt in media.formats:
        found = _encoding(media, fmt)
        if found is not None and found[1] == TELEPHONE_EVENT.upper() and found[2] == clock_rate:
            return found[0]
    return None


def _rtcp_target(media: MediaDescription, rtp_address: str) -> tuple[str, int]:
    """RFC 3605 a=rtcp, else the RTP address and port + 1 (RFC 3550 §11)."""
    rtcp: Rtcp | None = media.rtcp
    if rtcp is None:
        return rtp_address, (media.port + 1 if media.port else 0)
    address = rtcp.connection.host if rtcp.connection is not None else rtp_address
    return address, rtcp.port


def _rejected(media: MediaDescription) -> MediaDescription:
    """A rejected stream in an answer: same media, proto and formats, port 0 (RFC 3264 §6)."""
    formats = media.formats or ("0",)
    return MediaDescription(media=media.media, port=0, proto=media.proto, formats=formats)


def _usable_audio(media: MediaDescription, policy: AnswerPolicy) -> bool:
    return media.media == "audio" and media.port != 0 and media.proto in policy.profiles


def _audio_answer_media(
    offered: MediaDescription,
    *,
    local_port: int,
    payload_type: int,
    codec: Codec,
    telephone_event_pt: int | None,
    direction: Direction,
    policy: AnswerPolicy,
) -> MediaDescription:
    formats = [str(payload_type)]
    attributes = [Attribute("rtpmap", f"{payload_type} {codec.encoding_name}/{codec.clock_rate}")]
    if telephone_event_pt is not None:
        formats.append(str(telephone_event_pt))
        attributes.append(
            Attribute("rtpmap", f"{telephone_event_pt} {TELEPHONE_EVENT}/{codec.clock_rate}")
        )
        events = policy.telephone_event_events
        attributes.append(Attribute("fmtp", f"{telephone_event_pt} {events}"))
    attributes.append(Attribute("ptime", str(policy.ptime)))
    attributes.append(Attribute(direction.value))
    return MediaDescription(
        media="audio",
        port=local_port,
        proto=offered.proto,
        formats=tuple(formats),
        attributes=tuple(attributes),
    )


def _check_ptime(media: MediaDescription, policy: AnswerPolicy) -> None:
    maxptime = media.maxptime
    if maxptime is not None and maxptime < policy.ptime:
        raise NoCommonCodecError(f"maxptime {maxptime:g} ms is below our {policy.ptime} ms")
    ptime = media.ptime
    if policy.require_offer_ptime and ptime is not None and ptime != policy.ptime:
        raise NoCommonCodecError(f"offer asks for ptime {ptime:g} ms, we send {policy.ptime} ms")


# --------------------------------------------------------------------------------------------
# UAS side


def answer(
    offer: SessionDescription,
    *,
    local_address: str,
    local_port: int,
    supported: Sequence[Codec] = (PCMU, PCMA),
    session_id: int,
    session_version: int,
    policy: AnswerPolicy = AnswerPolicy(),
) -> AnswerResult:
    """Answer ``offer`` (RFC 3264 §6). Raise :class:`NoCommonCodecError` (488) when no audio
    stream can be used, and :class:`SdpError` when the audio stream has no connection address.
    """
    chosen: tuple[int, int, Codec] | None = None  # (m-line index, payload type, codec)
    refusal = "offer has no audio stream"
    for index, media in enumerate(offer.media):
        if not _usable_audio(media, policy):
            if media.media == "audio" and media.port != 0:
                refusal = f"unsupported transport {media.proto}"
            continue
        found = _choose_codec(media, supported)
        if found is None:
            refusal = "no common codec"
            continue
        _check_ptime(media, policy)
        chosen = (index, found[0], found[1])
        break
    if chosen is None:
        raise NoCommonCodecError(refusal)
    index, payload_type, codec = chosen
    offered = offer.media[index]
    connection = offer.media_connection(offered)
    if connection is None:
        raise SdpError("audio stream without connection address (c=)")
    remote_direction = offer.media_direction(offered)
    direction = remote_direction.reversed().intersect(policy.direction)
    hold = connection.is_hold_address or not remote_direction.receives
    if connection.is_hold_address:
        direction = direction.intersect(Direction.RECVONLY)  # nowhere to send to
    te_pt = _telephone_event_pt(offered, codec.clock_rate)
    rtcp_address, rtcp_port = _rtcp_target(offered, connection.host)

    answer_media = [
        (
            _audio_answer_media(
                offered,
                local_port=local_port,
                payload_type=payload_type,
                codec=codec,
                telephone_event_pt=te_pt,
                direction=direction,
                policy=policy,
            )
            if i == index
            else _rejected(media)
        )
        for i, media in enumerate(offer.media)
    ]
    local = Connection.for_address(local_address)
    sdp = SessionDescription(
        origin=Origin(
            username=policy.origin_username,
            session_id=session_id,
            session_version=session_version,
            addrtype=local.addrtype,
            address=local_address,
        ),
        session_name=policy.session_name,
        connection=local,
        timing=(Timing(),),
        media=tuple(answer_media),
    )
    negotiated = NegotiatedMedia(
        remote_address=connection.host,
        remote_port=offered.port,
        codec=codec.encoding_name.upper(),
        payload_type=payload_type,
        clock_rate=codec.clock_rate,
        telephone_event_pt=te_pt,
        ptime=policy.ptime,
        remote_ptime=offered.ptime,
        direction=direction,
        remote_direction=remote_direction,
        hold=hold,
        remote_rtcp_address=rtcp_address,
        remote_rtcp_port=rtcp_port,
        media_index=index,
    )
    return AnswerResult(sdp, negotiated)


def reanswer(
    previous_answer: SessionDescription,
    previous: NegotiatedMedia,
    new_offer: SessionDescription,
    *,
    supported: Sequence[Codec] = (PCMU, PCMA),
    policy: AnswerPolicy = AnswerPolicy(),
) -> ReanswerResult:
    """Answer a re-INVITE offer in an established session (RFC 3264 §8).

    Keeps our origin, address and port from ``previous_answer``. The session version goes up by
    one when the answer differs from the previous one and stays the same when it is identical
    (RFC 3264 §8: "If the version in the origin line does not increment, the SDP MUST be
    identical"), e.g. for a session-timer refresh. Raises like :func:`answer`; on 488 the
    previous session stays in force (RFC 3261 §14.2).
    """
    local_port = previous_answer.media[previous.media_index].port
    connection = previous_answer.connection
    if connection is None:  # our own answers always carry session-level c=
        raise SdpError("previous answer has no connection address")
    origin = previous_answer.origin
    result = answer(
        new_offer,
        local_address=connection.host,
        local_port=local_port,
        supported=supported,
        session_id=origin.session_id,
        session_version=origin.session_version,
        policy=replace(policy, origin_username=origin.username),
    )
    sdp_changed = result.sdp != previous_answer
    sdp = result.sdp
    if sdp_changed:
        sdp = replace(sdp, origin=replace(sdp.origin, session_version=origin.session_version + 1))
    media = result.media
    changes = MediaChange(
        remote_address_changed=(media.remote_address, media.remote_port)
        != (previous.remote_address, previous.remote_port),
        hold_started=media.hold and not previous.hold,
        hold_ended=previous.hold and not media.hold,
        codec_changed=(media.codec, media.payload_type) != (previous.codec, previous.payload_type),
        direction_changed=media.direction != previous.direction,
        telephone_event_changed=media.telephone_event_pt != previous.telephone_event_pt,
        sdp_changed=sdp_changed,
    )
    return ReanswerResult(sdp, media, changes)


# --------------------------------------------------------------------------------------------
# UAC side


def offer(
    *,
    local_address: str,
    local_port: int,
    session_id: int,
    session_version: int,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    telephone_event_pt: int | None = 101,
    policy: AnswerPolicy = AnswerPolicy(),
) -> SessionDescription:
    """Our offer for dial-out: ``m=audio <port> RTP/AVP 0 8 101``, rtpmaps, telephone-event
    0-15, ptime 20, and ``policy.direction`` (sendrecv)."""
    formats = [str(c.payload_type) for c in codecs]
    attributes = [
        Attribute("rtpmap", f"{c.payload_type} {c.encoding_name}/{c.clock_rate}") for c in codecs
    ]
    if telephone_event_pt is not None:
        formats.append(str(telephone_event_pt))
        attributes.append(Attribute("rtpmap", f"{telephone_event_pt} {TELEPHONE_EVENT}/8000"))
        events = policy.telephone_event_events
        attributes.append(Attribute("fmtp", f"{telephone_event_pt} {events}"))
    attributes.append(Attribute("ptime", str(policy.ptime)))
    attributes.append(Attribute(policy.direction.value))
    local = Connection.for_address(local_address)
    return SessionDescription(
        origin=Origin(
            username=policy.origin_username,
            session_id=session_id,
            session_version=session_version,
            addrtype=local.addrtype,
            address=local_address,
        ),
        session_name=policy.session_name,
        connection=local,
        timing=(Timing(),),
        media=(
            MediaDescription(
                media="audio",
                port=local_port,
                proto="RTP/AVP",
                formats=tuple(formats),
                attributes=tuple(attributes),
            ),
        ),
    )


def accept_answer(
    our_offer: SessionDescription, answer_sdp: SessionDescription, *, ptime: int = 20
) -> NegotiatedMedia:
    """Read the answer to ``our_offer`` (RFC 3264 §6, §7).

    Raise :class:`InvalidAnswerError` when the m-line count differs or the answer picks a codec
    we did not offer, and :class:`NoCommonCodecError` when it rejects our audio stream (port 0).
    ``payload_type`` / ``telephone_event_pt`` of the result are the answer's numbers (what the
    answerer expects to receive, RFC 3264 §6.1); normally they equal ours.
    """
    if len(answer_sdp.media) != len(our_offer.media):
        raise InvalidAnswerError("answer has a different number of m-lines than the offer")
    index = next((i for i, m in enumerate(our_offer.media) if m.media == "audio"), None)
    if index is None:
        raise InvalidAnswerError("our offer has no audio stream")
    offered = our_offer.media[index]
    answered = answer_sdp.media[index]
    if answered.media != "audio":
        raise InvalidAnswerError("answer changed the media type of the audio m-line")
    if answered.port == 0:
        raise NoCommonCodecError("answer rejected the audio stream")
    offered_codecs: set[tuple[str, int]] = set()
    for fmt in offered.formats:
        found = _encoding(offered, fmt)
        if found is not None:
            offered_codecs.add((found[1], found[2]))
    codec: tuple[int, str, int] | None = None
    te_pt: int | None = None
    for fmt in answered.formats:
        found = _encoding(answered, fmt)
        if found is None:
            raise InvalidAnswerError(f"answer uses unknown format {fmt!r}")
        pt, name, rate = found
        # RFC 3264 §6.1: the answer SHOULD (not MUST) reuse our numbers; match by name and rate
        if (name, rate) not in offered_codecs:
            raise InvalidAnswerError(f"answer picks {name}/{rate}, which we did not offer")
        if name == TELEPHONE_EVENT.upper():
            te_pt = pt if te_pt is None else te_pt
        elif codec is None:
            codec = found
    if codec is None:
        raise NoCommonCodecError("answer has no audio codec")
    connection = answer_sdp.media_connection(answered)
    if connection is None:
        raise InvalidAnswerError("answer has no connection address (c=)")
    remote_direction = answer_sdp.media_direction(answered)
    our_direction = our_offer.media_direction(offered)
    direction = remote_direction.reversed().intersect(our_direction)
    if connection.is_hold_address:
        direction = direction.intersect(Direction.RECVONLY)
    rtcp_address, rtcp_port = _rtcp_target(answered, connection.host)
    return NegotiatedMedia(
        remote_address=connection.host,
        remote_port=answered.port,
        codec=codec[1],
        payload_type=codec[0],
        clock_rate=codec[2],
        telephone_event_pt=te_pt,
        ptime=ptime,
        remote_ptime=answered.ptime,
        direction=direction,
        remote_direction=remote_direction,
        hold=connection.is_hold_address or not remote_direction.receives,
        remote_rtcp_address=rtcp_address,
        remote_rtcp_port=rtcp_port,
        media_index=index,
    )
