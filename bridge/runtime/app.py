"""The bridge process: SIP endpoint, transports and media runtime in one asyncio loop.

The SIP core (:class:`~bridge.sip.endpoint.SipEndpoint`) is sans-I/O; this module feeds it
datagrams and timer expiries, sends what it returns, and turns its events into media legs:
an offered call is answered with an SDP answer (RFC 3264) on a fresh RTP port pair and joins
a room of its own; a hangup removes the leg. A ``CallController`` decides what happens to
calls: ``serve`` runs the dial-in conferences (``bridge.runtime.controller``); without a
controller a call joins the room named by the Request-URI user (``DirectRoomController``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.codecs.g711 import Codec
from bridge.config import Config
from bridge.media.engine import LegMedia, MediaEvent
from bridge.replay.capture import PcapWriter
from bridge.runtime.admission import AdmissionRefused, admission_refusal
from bridge.runtime.calls import CallController, CallHost, Leg
from bridge.runtime.media import MediaRuntime
from bridge.runtime.sip_transport import Addr, SipTransport, TcpLimits
from bridge.runtime.workers import LocalMedia, MediaControl, WorkerPool
from bridge.sdp.model import SdpError, parse_sdp
from bridge.sdp.negotiate import (
    InvalidAnswerError,
    NegotiatedMedia,
    NoCommonCodecError,
    accept_answer,
    answer,
    offer,
    reanswer,
)
from bridge.sip.endpoint import Credentials, EndpointConfig, SipEndpoint
from bridge.sip.events import (
    CallAnswered,
    CallEnded,
    CallEstablished,
    CallOffered,
    Event,
    InfoDtmfReceived,
    MessageRejected,
    RegistrationChanged,
    ReinviteReceived,
    RemoteSdpChanged,
)
from bridge.sip.intake import IntakeLimits, Peek, SipIntake, Verdict, peek, peek_message
from bridge.sip.message import SipMessage, SipRequest
from bridge.sip.uri import SipUri

log = logging.getLogger("bridge")

SHUTDOWN_GRACE = 0.5  # seconds to let the 200s to our BYEs arrive


class DirectRoomController:
    """No IVR: a call joins the room named by the Request-URI user at once."""

    async def offered(self, app: CallHost, offered: CallOffered) -> int | None:
        return None

    def answered(self, app: CallHost, leg: Leg) -> None:
        if not leg.outbound:
            app.media_control.move_leg(leg.call, leg.dialed or "default")

    def ended(self, app: CallHost, leg: Leg, reason: str) -> None:
        return None

    def media_event(self, app: CallHost, event: MediaEvent) -> None:
        return None


@dataclass(slots=True)
class AppCounters:
    calls_offered: int = 0
    calls_answered: int = 0
    calls_rejected: int = 0
    calls_refused_overload: int = 0  # 503 + Retry-After from admission control
    calls_ended: int = 0
    bad_messages: int = 0


def leg_media(negotiated: NegotiatedMedia) -> LegMedia:
    """The engine's view of an SDP negotiation."""
    remote = None
    if negotiated.sends and negotiated.remote_port:
        remote = (negotiated.remote_address, negotiated.remote_port)
    return LegMedia(
        codec=Codec.from_encoding_name(negotiated.codec),
        payload_type=negotiated.payload_type,
        telephone_event_pt=negotiated.telephone_event_pt,
        remote=remote,
        sends=negotiated.sends,
    )


def local_address_towards(peer_host: str) -> str:
    """The local address the OS would use to reach ``peer_host`` (a UDP connect sends
    nothing)."""
    family = socket.AF_INET6 if ":" in peer_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((peer_host, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"


class BridgeApp:
    """Everything one bridge process runs."""

    def __init__(self, config: Config, controller: CallController | None = None) -> None:
        self.config = config
        self.controller: CallController = controller or DirectRoomController()
        self.counters = AppCounters()
        self.legs: dict[str, Leg] = {}
        sip = config.sip
        self._trunks = [ipaddress.ip_network(n, strict=False) for n in sip.trunk_networks]
        self.intake = SipIntake(
            IntakeLimits(rate=sip.intake_rate, burst=sip.intake_burst,
                         dialog_rate=sip.intake_dialog_rate,
                         dialog_burst=max(1, int(sip.intake_dialog_rate * 2)),
                         refusal_rate=sip.intake_refusal_rate,
                         refusal_burst=int(sip.intake_refusal_rate * 2),
                         trunk_rate=sip.intake_trunk_rate,
                         trunk_burst=max(1, int(sip.intake_trunk_rate * 2)),
                         log_interval=sip.intake_log_interval),
            is_trunk=self._is_trunk,
        )
        self._retry_after = (("Retry-After", str(sip.intake_retry_after)),)
        self.transport = SipTransport(
            self._deliver, is_priority=self._is_trunk,
            tcp_limits=TcpLimits(max_connections=sip.tcp_max_connections,
                                 reserved=sip.tcp_reserved, per_source=sip.tcp_per_source,
                                 idle_timeout=sip.tcp_idle_timeout),
            is_privileged=self._is_privileged, dialog_peers=self._dialog_peers)
        workers = config.media.workers
        self.media = MediaRuntime(
            bind_host=config.rtp.bind_host,
            port_low=config.rtp.port_low,
            port_high=config.rtp.port_high,
            on_event=self._on_local_media_event if workers else self._on_media_event,
        )
        # [media] workers: conference rooms run in worker processes (bridge.runtime.workers);
        # the controllers reach the media only through media_control either way.
        self.pool: WorkerPool | None = None
        self.media_control: MediaControl = LocalMedia(self.media)
        if workers:
            self.pool = WorkerPool(self.media, workers, on_event=self._on_media_event,
                                   on_lost=self._media_lost, log_level=config.log_level)
            self.media_control = self.pool
        self._networks = [ipaddress.ip_network(n, strict=False)
                          for n in config.sip.allowed_networks]
        self.endpoint: SipEndpoint | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._admitting = 0  # calls past admission control, not answered yet
        self._stopping = False
        self.media_listeners: list[Callable[[MediaEvent], None]] = []
        self.sip_listeners: list[Callable[[Event], None]] = []
        self.local: Addr = ("0.0.0.0", 0)
        self.capture: PcapWriter | None = None  # [debug] capture_path / serve --capture

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> Addr:
        self._loop = asyncio.get_running_loop()
        sip = self.config.sip
        self.local = await self.transport.start(sip.listen_host, sip.listen_port, sip.transports)
        self._start_capture()
        contact_host = sip.external_address or self._advertised_host(sip.listen_host)
        users = dict(sip.auth_users) if sip.auth_users else None
        self.endpoint = SipEndpoint(
            EndpointConfig(
                local_host=contact_host,
                local_port=self.local[1],
                transports=tuple(t.upper() for t in sip.transports),
                contact_host=contact_host,
                contact_port=self.local[1],
                user_agent=sip.user_agent,
                authorize=self._authorize,
                inbound_realm=sip.auth_realm,
                inbound_users=users,
                session_expires=sip.session_expires,
            )
        )
        self.media.start()
        if self.pool is not None:
            try:
                await self.pool.start()
            except BaseException:
                await self.media.close()
                await self.transport.close()
                raise
        trunk = self.config.trunk
        if trunk.registrar and trunk.aor:
            credentials = None
            if trunk.username and trunk.password is not None:
                credentials = Credentials(trunk.username, trunk.password)
            self.endpoint.register(trunk.registrar, trunk.aor, self._loop.time(),
                                   credentials=credentials, expires=trunk.expires)
            self._pump()
        log.info("SIP listening on %s:%d (%s)", self.local[0], self.local[1],
                 "+".join(sip.transports))
        return self.local

    def _start_capture(self) -> None:
        debug = self.config.debug
        if not debug.capture_path:
            return
        self.capture = PcapWriter(Path(debug.capture_path), max_bytes=debug.capture_max_bytes)
        self.transport.tap = self.capture.tap
        if debug.capture_rtp:  # legs in media workers (other processes) are not captured
            self.media.io.tap = self.capture.tap
        log.info("capturing %s to %s", "SIP and RTP" if debug.capture_rtp else "SIP",
                 debug.capture_path)

    @staticmethod
    def _advertised_host(listen_host: str) -> str:
        if listen_host not in ("0.0.0.0", "::", ""):
            return listen_host
        return local_address_towards("192.0.2.1")  # TEST-NET-1: only picks the route

    async def stop(self) -> None:
        """BYE every call, wait briefly for the answers, close everything."""
        assert self._loop is not None and self.endpoint is not None
        self._stopping = True  # from now on new INVITEs get 503
        had_calls = bool(self.endpoint.active_calls())
        self.endpoint.shutdown(self._loop.time())
        self._pump()
        if had_calls:
            # Let the BYEs be answered (and retransmitted over UDP meanwhile).
            await asyncio.sleep(SHUTDOWN_GRACE)
        for task in list(self._tasks):
            task.cancel()
        for leg_id in list(self.legs):
            self._end_leg(leg_id)
        if self._timer is not None:
            self._timer.cancel()
        if self.pool is not None:
            await self.pool.close()
        await self.media.close()
        await self.transport.close()
        if self.capture is not None:
            self.capture.close()

    # -- SIP plumbing ---------------------------------------------------------------------------

    def _is_privileged(self, host: str) -> bool:
        """Trunks and the allowed networks: they may use the reserved TCP connections."""
        if self._is_trunk(host):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._networks)

    def _dialog_peers(self) -> set[Addr]:
        return self.endpoint.dialog_peers("TCP") if self.endpoint is not None else set()

    def _is_trunk(self, host: str) -> bool:
        if not self._trunks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._trunks)

    def _deliver(self, data: bytes | SipMessage, addr: Addr, transport: str) -> None:
        assert self._loop is not None and self.endpoint is not None
        now = self._loop.time()
        summary: Peek = peek(data) if isinstance(data, bytes) else peek_message(data)
        known = summary.call_id is not None and self.endpoint.knows_call_id(summary.call_id)
        verdict = self.intake.admit(addr[0], summary, known, now)
        for report in self.intake.reports(now):
            log.warning("%s", report)
        blocked = self.intake.blocked(now)
        if blocked is not None:
            if blocked - self.transport.blocked:
                log.warning("SIP intake: blocking %s for %.0f s (flooding)",
                            ", ".join(sorted(blocked - self.transport.blocked)),
                            self.intake.limits.block_seconds)
            self.transport.block(blocked)
        if verdict is Verdict.DROP:
            return
        if verdict is Verdict.REFUSE:
            self.endpoint.refuse(data, addr, transport, 503, self._retry_after)
            self._pump()
            return
        if isinstance(data, bytes):
            self.endpoint.receive(data, addr, transport, now)
        else:
            self.endpoint.receive_message(data, addr, transport, now)
        self._pump()

    def _pump(self) -> None:
        """Send what the endpoint produced, handle its events, re-arm its timer."""
        endpoint = self.endpoint
        assert endpoint is not None and self._loop is not None
        try:
            while True:
                for out in endpoint.datagrams_to_send():
                    self.transport.send(out.data, out.addr, out.transport)
                events = endpoint.events()
                if not events:
                    break
                for event in events:
                    try:
                        self._on_sip_event(event)
                    except Exception:  # one call's handler failed: the others go on
                        log.exception("handling %r failed", event)
        finally:
            self._rearm(endpoint)

    def _rearm(self, endpoint: SipEndpoint) -> None:
        assert self._loop is not None
        deadline = endpoint.next_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = deadline
            if deadline is not None:
                self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        assert self._loop is not None and self.endpoint is not None
        self._timer = None
        self._timer_at = None
        try:
            self.endpoint.handle_timer(self._loop.time())
        finally:
            self._pump()

    def _authorize(self, request: SipRequest, source: Addr) -> int | None:
        """Only INVITEs from the allowed networks (trunks, PBX, LAN) are served."""
        try:
            address = ipaddress.ip_address(source[0])
        except ValueError:
            return 403
        if any(address in net for net in self._networks):
            return None
        log.info("INVITE from %s refused: not in sip.allowed_networks", source[0])
        return 403

    # -- SIP events -----------------------------------------------------------------------------

    def _on_sip_event(self, event: Event) -> None:
        for listener in self.sip_listeners:
            listener(event)
        match event:
            case CallOffered():
                self.counters.calls_offered += 1
                self._spawn(self._answer(event))
            case CallEstablished(call=call):
                leg = self.legs.get(call)
                if leg is not None:
                    leg.established_at = time.time()
            case CallAnswered(call=call, sdp=sdp):
                self._outbound_answered(call, sdp)
            case CallEnded(call=call, reason=reason):
                self.counters.calls_ended += 1
                log.info("call %s ended: %s", call, reason)
                self._end_leg(call, reason)
            case ReinviteReceived(call=call, sdp=sdp):
                self._reinvite(call, sdp)
            case RemoteSdpChanged(call=call, sdp=sdp):
                self._remote_sdp_changed(call, sdp)
            case InfoDtmfReceived(call=call, digit=digit, duration_ms=duration):
                assert self._loop is not None
                self.media_control.add_info_digit(call, digit, duration, self._loop.time())
            case MessageRejected(source=source, reason=reason, status=status):
                self.counters.bad_messages += 1
                log.debug("bad SIP message from %s:%d (%s): %s", source[0], source[1],
                          status or "dropped", reason)
            case RegistrationChanged(aor=aor, registered=registered, status=status):
                log.info("registration of %s: %s (%s)", aor,
                         "registered" if registered else "not registered", status)
            case _:
                pass

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())

    def admission(self) -> AdmissionRefused | None:
        """Whether a new call would be refused now (``[media]`` limits; see
        :mod:`bridge.runtime.admission`)."""
        media = self.config.media
        here = len(self.legs) - (self.pool.worker_legs if self.pool is not None else 0)
        return admission_refusal(
            media,
            participants=here + self._admitting,
            recent_lateness=self.media.recent_lateness(media.lateness_window_ticks),
            worker_participants=self.pool.loads() if self.pool is not None else (),
        )

    async def _answer(self, offered: CallOffered) -> None:
        """Admission control first (503 + Retry-After near capacity), then answer."""
        if self._stopping:
            self._reject(offered.call, 503, headers=(("Retry-After", "30"),))
            return
        refusal = self.admission()
        if refusal is not None:
            log.warning("call %s refused with %d: %s", offered.call, refusal.status,
                        refusal.reason)
            self.counters.calls_refused_overload += 1
            self._reject(offered.call, refusal.status, headers=refusal.headers)
            return
        self._admitting += 1
        try:
            await self._answer_admitted(offered)
        except Exception:  # e.g. the store failed: answer the caller, free the ports
            log.exception("answering call %s failed", offered.call)
            self.media_control.remove_leg(offered.call)
            self._reject(offered.call, 500)
        finally:
            self._admitting -= 1

    async def _answer_admitted(self, offered: CallOffered) -> None:
        endpoint = self.endpoint
        assert endpoint is not None and self._loop is not None
        call = offered.call
        if not offered.sdp:
            self._reject(call, 488)  # offerless INVITE: not supported yet
            return
        refusal = await self.controller.offered(self, offered)
        if refusal is not None:
            self._reject(call, refusal)
            return
        try:
            remote_offer = parse_sdp(offered.sdp)
        except SdpError:
            self._reject(call, 400)
            return
        try:
            port = await self.media.open_leg(call)
        except OSError:
            log.warning("no RTP port for call %s", call)
            self._reject(call, 503)
            return
        leg = Leg(call=call, room=f"leg:{call}", outbound=False,
                  caller=offered.from_uri, dialed=offered.user or "", source=offered.source,
                  local_port=port)
        try:
            result = answer(
                remote_offer,
                local_address=self._media_address(offered.source[0]),
                local_port=port,
                session_id=leg.session_id,
                session_version=1,
            )
        except NoCommonCodecError:
            self.media.remove_leg(call)
            self._reject(call, 488)
            return
        except SdpError:
            self.media.remove_leg(call)
            self._reject(call, 400)
            return
        if not self._usable(result.media):
            log.info("call %s offers media at %r: not an address our RTP sockets reach",
                     call, result.media.remote_address)
            self.media.remove_leg(call)
            self._reject(call, 488)
            return
        leg.media = result.media
        leg.local_sdp = result.sdp
        if not endpoint.answer(call, result.sdp.to_bytes(), self._loop.time()):
            self.media.remove_leg(call)  # cancelled meanwhile
            self._pump()
            return
        self.legs[call] = leg
        self.counters.calls_answered += 1
        log.info("call %s answered: %s -> %s", call, leg.caller, leg.dialed)
        self.media.attach_leg(call, leg.room, leg_media(result.media))
        self._pump()
        self.controller.answered(self, leg)

    def _reject(self, call: str, status: int,
                headers: tuple[tuple[str, str], ...] = ()) -> None:
        assert self.endpoint is not None and self._loop is not None
        self.counters.calls_rejected += 1
        self.endpoint.reject(call, status, self._loop.time(), headers=headers)
        self._pump()

    def _usable(self, media: NegotiatedMedia) -> bool:
        """The remote media address must be an IP literal of our RTP sockets' family: a host
        name would need a lookup per packet, and the wrong family cannot be sent to."""
        if not media.sends or not media.remote_port:
            return True
        try:
            address = ipaddress.ip_address(media.remote_address)
        except ValueError:
            return False
        family = 6 if ":" in self.config.rtp.bind_host else 4
        return address.version == family

    def _media_address(self, peer_host: str) -> str:
        if self.config.sip.external_address:
            return self.config.sip.external_address
        if self.config.rtp.bind_host not in ("0.0.0.0", "::", ""):
            return self.config.rtp.bind_host
        return local_address_towards(peer_host)

    def _reinvite(self, call: str, sdp: bytes) -> None:
        endpoint = self.endpoint
        assert endpoint is not None and self._loop is not None
        leg = self.legs.get(call)
        if leg is None or leg.media is None or leg.local_sdp is None:
            endpoint.reject_reinvite(call, 488, self._loop.time())
            return
        if not sdp:
            # Offerless re-INVITE (a refresh, or resuming from hold): our 200 carries a fresh
            # sendrecv offer (not our last answer, which may be recvonly after a hold); the
            # answer arrives in the ACK (RemoteSdpChanged).
            fresh = offer(local_address=leg.local_sdp.origin.address, local_port=leg.local_port,
                          session_id=leg.session_id,
                          session_version=leg.local_sdp.origin.session_version + 1)
            leg.local_sdp, leg.offer_pending = fresh, True
            endpoint.answer_reinvite(call, fresh.to_bytes(), self._loop.time())
            return
        try:
            result = reanswer(leg.local_sdp, leg.media, parse_sdp(sdp))
        except (SdpError, NoCommonCodecError):
            endpoint.reject_reinvite(call, 488, self._loop.time())
            return
        if not self._usable(result.media):
            endpoint.reject_reinvite(call, 488, self._loop.time())
            return
        leg.media, leg.local_sdp = result.media, result.sdp
        endpoint.answer_reinvite(call, result.sdp.to_bytes(), self._loop.time())
        if call in self.media_control:
            self.media_control.update_leg(call, leg_media(result.media))

    def _remote_sdp_changed(self, call: str, sdp: bytes) -> None:
        """The answer to an offer of ours (in the ACK, or to our re-INVITE)."""
        leg = self.legs.get(call)
        if leg is None or leg.local_sdp is None or not (leg.outbound or leg.offer_pending):
            return
        leg.offer_pending = False
        try:
            media = accept_answer(leg.local_sdp, parse_sdp(sdp))
        except (SdpError, InvalidAnswerError, NoCommonCodecError):
            return
        if not self._usable(media):
            return
        leg.media = media
        if call in self.media_control:
            self.media_control.update_leg(call, leg_media(leg.media))

    def _end_leg(self, call: str, reason: str = "local_bye") -> None:
        leg = self.legs.pop(call, None)
        self.media_control.remove_leg(call)
        if leg is not None:
            self.controller.ended(self, leg, reason)

    # -- dial-out -------------------------------------------------------------------------------

    async def dial(self, uri: str, room: str, *, credentials: Credentials | None = None,
                   caller: str | None = None) -> str:
        """Call ``uri`` and join the answered call to ``room``. Returns the call handle."""
        endpoint = self.endpoint
        assert endpoint is not None and self._loop is not None
        # The URI's host decides our media address (towards it); a malformed URI is refused
        # here, before any port is taken.
        host = SipUri.parse(uri).host.strip("[]")
        temp_id = f"out-{secrets.token_hex(6)}"
        port = await self.media.open_leg(temp_id)
        session_id = secrets.randbelow(2**31)
        our_offer = offer(local_address=self._media_address(host), local_port=port,
                          session_id=session_id, session_version=1)
        from_uri = caller or f"sip:bridge@{endpoint.config.sent_by_host}"
        try:
            call = endpoint.invite(uri, from_uri, our_offer.to_bytes(), self._loop.time(),
                                   credentials=credentials)
        except ValueError:  # SipParseError for a malformed URI: free the ports, tell the caller
            self.media.remove_leg(temp_id)
            raise
        self.media.rename_leg(temp_id, call)
        self.legs[call] = Leg(call=call, room=room, outbound=True, caller=from_uri, dialed=uri,
                              source=None, local_port=port, local_sdp=our_offer,
                              session_id=session_id)
        self._pump()
        return call

    def _outbound_answered(self, call: str, sdp: bytes) -> None:
        leg = self.legs.get(call)
        if leg is None or leg.local_sdp is None:
            return
        try:
            leg.media = accept_answer(leg.local_sdp, parse_sdp(sdp))
        except (SdpError, InvalidAnswerError, NoCommonCodecError):
            leg.media = None
        if leg.media is None or not self._usable(leg.media):
            log.warning("unusable SDP answer on call %s: hanging up", call)
            self.hangup(call)
            return
        leg.established_at = time.time()
        # As for an inbound call: the media starts in a room of its own here, then joins its
        # room (in a media worker, if the room lives in one).
        self.media.attach_leg(call, f"leg:{call}", leg_media(leg.media))
        self.media_control.move_leg(call, leg.room)
        self.controller.answered(self, leg)

    def hangup(self, call: str) -> None:
        assert self.endpoint is not None and self._loop is not None
        self.endpoint.hangup(call, self._loop.time())
        self._pump()

    # -- media events --------------------------------------------------------------------------

    def _on_media_event(self, event: MediaEvent) -> None:
        for listener in self.media_listeners:
            listener(event)
        self.controller.media_event(self, event)

    def _on_local_media_event(self, event: MediaEvent) -> None:
        """An event of this process's engine when workers run too (prompt counts as the
        pool keeps them across moves)."""
        assert self.pool is not None
        self._on_media_event(self.pool.local_event(event))

    def _media_lost(self, calls: list[str]) -> None:
        """A media worker died: its calls are hung up (their records close as interrupted)."""
        for call in calls:
            if call in self.legs:
                log.warning("call %s: its media worker died; hanging up", call)
                self.hangup(call)
