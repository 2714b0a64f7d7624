"""One typed configuration: embedded defaults, overridden by a TOML file, then by flags.

Validated once at start; a bad value raises ConfigError with a one-line message that the CLI
prints before exiting with status 2.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_ALLOWED_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)


class ConfigError(ValueError):
    """A configuration value is missing or invalid."""


def parse_hostport(text: str, default_port: int, *, allow_zero: bool = False) -> tuple[str, int]:
    """Parse ``HOST:PORT``, ``HOST``, ``:PORT`` or ``[V6]:PORT`` (port 0 with ``allow_zero``)."""
    text = text.strip()
    if not text:
        raise ConfigError("empty address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ConfigError(f"bad address {text!r}: missing ']'")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ConfigError(f"bad address {text!r}")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    host = host or "0.0.0.0"
    if not port_text:
        return host, default_port
    low = 0 if allow_zero else 1
    if not port_text.isdigit() or not low <= int(port_text) < 65536:
        raise ConfigError(f"bad port in {text!r}")
    return host, int(port_text)


def parse_port_range(text: str) -> tuple[int, int]:
    """Parse ``LOW-HIGH`` (an even low port; at least one RTP/RTCP pair)."""
    low_text, sep, high_text = text.partition("-")
    if not sep or not low_text.strip().isdigit() or not high_text.strip().isdigit():
        raise ConfigError(f"bad port range {text!r}: expected LOW-HIGH")
    low, high = int(low_text), int(high_text)
    if not 1024 <= low < high <= 65535:
        raise ConfigError(f"bad port range {text!r}: need 1024 <= LOW < HIGH <= 65535")
    if low % 2:
        low += 1
    if high - low < 1:
        raise ConfigError(f"port range {text!r} holds no even/odd RTP/RTCP pair")
    return low, high


@dataclass(frozen=True, slots=True)
class SipConfig:
    listen_host: str = "0.0.0.0"
    listen_port: int = 5060
    transports: tuple[str, ...] = ("udp", "tcp")
    # Address written into Contact, Via and SDP; None means the listen address, or the
    # address the OS picks towards the peer when listening on 0.0.0.0.
    external_address: str | None = None
    user_agent: str = "bridge/0.1"
    # Source networks allowed to send INVITE (trunks, a local PBX, softphones on the LAN).
    allowed_networks: tuple[str, ...] = DEFAULT_ALLOWED_NETWORKS
    # Optional inbound digest auth: user -> password. Empty: no inbound auth.
    auth_realm: str = "bridge"
    auth_users: tuple[tuple[str, str], ...] = ()
    session_expires: int = 1800
    # Fair intake (bridge.sip.intake): sources ahead of everyone, with limits of their own
    # (the trunks; the capacity benchmark's load generator). Limits per source address for
    # everyone else: new requests per second and burst, in-dialog messages per second, 503s
    # per second beyond the limit (then silence), the 503's Retry-After, the log interval.
    trunk_networks: tuple[str, ...] = ()
    intake_rate: float = 20.0
    intake_burst: int = 60
    intake_dialog_rate: float = 200.0
    intake_refusal_rate: float = 5.0
    intake_trunk_rate: float = 2000.0
    intake_retry_after: int = 10
    intake_log_interval: float = 10.0
    # TCP (bridge.runtime.sip_transport.TcpLimits): connections in all, reserved for trunks
    # and allowed networks, per source address, idle timeout without a dialog (seconds; an
    # RFC 5626 CRLF keepalive keeps a flow open).
    tcp_max_connections: int = 1024
    tcp_reserved: int = 128
    tcp_per_source: int = 32
    tcp_idle_timeout: float = 150.0


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """Upstream registration, for trunks that want it. No registrar: no REGISTER."""

    registrar: str | None = None
    aor: str | None = None
    username: str | None = None
    password: str | None = None
    expires: int = 600


@dataclass(frozen=True, slots=True)
class RtpConfig:
    bind_host: str = "0.0.0.0"
    port_low: int = 20000
    port_high: int = 29999


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Admission control: refuse new calls with 503 and Retry-After (RFC 3261 §21.5.4,
    §20.33) before the media clock of this process collapses.

    ``max_participants``: legs this process takes at most (0: no limit). The default is 0.8
    times the median capacity ``bridge bench capacity`` measured on the project's reference
    machine (2-core AMD EPYC VM shared with the load generator, uvloop, rooms of 3, everyone
    talking, callers through the IVR: 399 participants at p99 tick lateness < 5 ms and loss
    < 0.1 %; the next step, 798, broke the clock). Run the benchmark on your own hardware and
    set it from the ``recommended [media] max_participants`` line it prints.
    ``max_lateness_p99_ms``: also refuse while the p99 tick lateness of the last
    ``lateness_window_ticks`` ticks is at or above this many ms; a guard for when the machine
    is slower or busier than measured. Off (0) by default: on a shared machine a neighbour's
    burst makes a few ticks 20+ ms late at any load, and callers would be refused for it;
    on a dedicated host 20 ms is a sensible value (a collapsing clock is 50-200 ms late).
    ``retry_after``: seconds in the Retry-After header of the 503.
    ``workers``: media worker processes (``bridge.runtime.workers``). 0: everything runs in
    the one asyncio process. N >= 1: SIP, the IVR and the legs not in a conference stay in
    the main process; each conference room's media runs in one of N worker processes (the
    least loaded when the room opens). ``max_participants`` then counts per process.
    """

    max_participants: int = 320
    max_lateness_p99_ms: float = 0.0
    lateness_window_ticks: int = 50
    retry_after: int = 30
    workers: int = 0


@dataclass(frozen=True, slots=True)
class ConferenceConfig:
    """The dial-in service.

    ``node_id`` names this bridge process in the call records; it must stay the same across
    restarts (crash recovery closes the records it left open) and differ between processes
    sharing one database. Empty: the host name. ``default_country`` (ISO 3166 alpha-2)
    completes national numbers in the Request-URI. ``trusted_networks`` are trunks whose From
    header identifies the caller, so PIN failures are counted per caller number there (per
    source address everywhere else).
    """

    node_id: str = ""
    default_country: str = ""
    trusted_networks: tuple[str, ...] = ()
    ivr_calls_per_source: int = 4  # calls of one source in the IVR at once, all nodes (0: off)
    heartbeat_interval: float = 5.0  # seconds between this node's heartbeats in the store


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The HTTP API (``bridge.web``).

    ``listen``: ``HOST:PORT`` (port 0: an ephemeral port, logged at start; empty: no web
    server); ``BRIDGE_WEB_LISTEN`` overrides it. ``tls_cert``/``tls_key``: PEM files; both
    set: HTTPS. ``trusted_proxies``: networks of reverse proxies whose ``X-Forwarded-For``
    names the client.
    """

    listen: str = "127.0.0.1:8080"
    tls_cert: str = ""
    tls_key: str = ""
    trusted_proxies: tuple[str, ...] = ()

    def address(self) -> tuple[str, int] | None:
        """The listen address, or None when the web server is off."""
        if not self.listen.strip():
            return None
        return parse_hostport(self.listen, 8080, allow_zero=True)


@dataclass(frozen=True, slots=True)
class DebugConfig:
    """[debug]: ``capture_path`` writes SIP (and with ``capture_rtp`` RTP) to a pcap,
    rotated when it reaches ``capture_max_bytes`` (0: never)."""

    capture_path: str = ""
    capture_rtp: bool = False
    capture_max_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Config:
    sip: SipConfig = field(default_factory=SipConfig)
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    rtp: RtpConfig = field(default_factory=RtpConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    conference: ConferenceConfig = field(default_factory=ConferenceConfig)
    web: WebConfig = field(default_factory=WebConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    db_path: Path = Path("var/bridge.sqlite3")
    # ``sqlite:///var/bridge.sqlite3`` or ``postgresql://user@host/db``; empty: ``db_path``
    db_url: str = ""
    prompts_dir: Path | None = None
    log_level: str = "INFO"
    log_format: str = "text"  # "text" or "json" (one JSON object per line, bridge.logs)

    @property
    def database(self) -> Path | str:
        """The store to open: a SQLite path, or a database URL (``db_url`` when set)."""
        return self.db_url if self.db_url else self.db_path

    def validate(self) -> Config:
        if self.db_url and not self.db_url.startswith(
            ("sqlite://", "postgresql://", "postgres://")
        ):
            raise ConfigError(
                f"db_url: expected sqlite:///PATH or postgresql://..., got {self.db_url!r}"
            )
        for net in self.sip.allowed_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ConfigError(f"sip.allowed_networks: {exc}") from None
        for net in self.conference.trusted_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ConfigError(f"conference.trusted_networks: {exc}") from None
        for net in self.sip.trunk_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ConfigError(f"sip.trunk_networks: {exc}") from None
        sip = self.sip
        if min(sip.intake_rate, sip.intake_dialog_rate, sip.intake_trunk_rate) <= 0:
            raise ConfigError("sip.intake_*_rate: must be positive")
        if sip.intake_burst < 1 or sip.intake_refusal_rate < 0 or sip.intake_retry_after < 0:
            raise ConfigError("sip.intake_burst must be positive; refusal rate and "
                              "retry_after must not be negative")
        if sip.intake_log_interval <= 0:
            raise ConfigError("sip.intake_log_interval: must be positive")
        if not 0 <= sip.tcp_reserved < sip.tcp_max_connections or sip.tcp_per_source < 1:
            raise ConfigError("sip.tcp_*: need 0 <= tcp_reserved < tcp_max_connections and "
                              "tcp_per_source >= 1")
        if sip.tcp_idle_timeout <= 0:
            raise ConfigError("sip.tcp_idle_timeout: must be positive")
        country = self.conference.default_country
        if country and (len(country) != 2 or not country.isalpha()):
            raise ConfigError(f"conference.default_country: {country!r} is not ISO 3166 alpha-2")
        for transport in self.sip.transports:
            if transport not in ("udp", "tcp"):
                raise ConfigError(f"sip.transports: unknown transport {transport!r}")
        if not self.sip.transports:
            raise ConfigError("sip.transports: at least one transport is needed")
        if not 0 < self.sip.listen_port < 65536:
            raise ConfigError("sip.listen_port out of range")
        if self.rtp.port_low >= self.rtp.port_high:
            raise ConfigError("rtp port range is empty")
        if self.media.max_participants < 0:
            raise ConfigError("media.max_participants: must be 0 (no limit) or positive")
        if self.media.max_lateness_p99_ms < 0:
            raise ConfigError("media.max_lateness_p99_ms: must be 0 (off) or positive")
        if self.media.lateness_window_ticks < 1:
            raise ConfigError("media.lateness_window_ticks: must be positive")
        if self.media.retry_after < 0:
            raise ConfigError("media.retry_after: must not be negative")
        if self.media.workers < 0:
            raise ConfigError("media.workers: must be 0 (one process) or positive")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format: expected \"text\" or \"json\", got {self.log_format!r}")
        self.web.address()
        for net in self.web.trusted_proxies:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ConfigError(f"web.trusted_proxies: {exc}") from None
        if bool(self.web.tls_cert) != bool(self.web.tls_key):
            raise ConfigError("web: tls_cert and tls_key go together")
        if self.debug.capture_max_bytes < 0:
            raise ConfigError("debug.capture_max_bytes: must be 0 (no rotation) or positive")
        if self.conference.ivr_calls_per_source < 0:
            raise ConfigError("conference.ivr_calls_per_source: must be 0 (off) or positive")
        if self.conference.heartbeat_interval <= 0:
            raise ConfigError("conference.heartbeat_interval: must be positive")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level: unknown level {self.log_level!r}")
        return self


_SECTIONS: dict[str, type[Any]] = {
    "sip": SipConfig, "trunk": TrunkConfig, "rtp": RtpConfig, "media": MediaConfig,
    "conference": ConferenceConfig, "web": WebConfig, "debug": DebugConfig,
}


def _coerce(section: str, name: str, value: Any, current: Any) -> Any:
    where = f"{section}.{name}" if section else name
    if isinstance(current, bool) or isinstance(value, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if isinstance(current, float):
        if not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number")
        return float(value)
    if isinstance(current, int) and not isinstance(current, bool):
        if not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer")
        return value
    if isinstance(current, tuple):
        if name == "auth_users":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigError(f"{where}: expected a table of user = \"password\"")
            return tuple(sorted(value.items()))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    if isinstance(current, Path) or name in ("db_path", "prompts_dir"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path string")
        return Path(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string")
    return value


def _apply(obj: Any, section: str, table: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            where = f"{section}.{key}" if section else key
            raise ConfigError(f"unknown setting {where!r}")
        changes[key] = _coerce(section, key, value, getattr(obj, key))
    return replace(obj, **changes)


def load_config(path: Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Defaults, then the TOML file (if any), then ``BRIDGE_DB`` (a SQLite path) and
    ``BRIDGE_DB_URL`` from the environment."""
    config = Config()
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path}: {exc}") from None
        top: dict[str, Any] = {}
        for key, value in data.items():
            if key in _SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigError(f"[{key}] must be a table")
                sub = _apply(getattr(config, key), key, value)
                config = replace(config, **{key: sub})
            else:
                top[key] = value
        config = _apply(config, "", top)
    env = os.environ.copy() if env is None else env
    if env.get("BRIDGE_DB"):
        config = replace(config, db_path=Path(env["BRIDGE_DB"]), db_url="")
    if env.get("BRIDGE_DB_URL"):
        config = replace(config, db_url=env["BRIDGE_DB_URL"])
    if "BRIDGE_WEB_LISTEN" in env:
        config = replace(config, web=replace(config.web, listen=env["BRIDGE_WEB_LISTEN"]))
    return config


def with_overrides(
    config: Config,
    *,
    sip_listen: str | None = None,
    rtp_ports: str | None = None,
    db: str | None = None,
) -> Config:
    """Apply command-line flags on top of the file configuration."""
    if sip_listen is not None:
        host, port = parse_hostport(sip_listen, 5060)
        config = replace(config, sip=replace(config.sip, listen_host=host, listen_port=port))
    if rtp_ports is not None:
        low, high = parse_port_range(rtp_ports)
        config = replace(config, rtp=replace(config.rtp, port_low=low, port_high=high))
    if db is not None:  # --db PATH (a SQLite file) or --db URL
        if "://" in db:
            config = replace(config, db_url=db)
        else:
            config = replace(config, db_path=Path(db), db_url="")
    return config.validate()
