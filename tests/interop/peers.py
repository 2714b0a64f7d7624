"""Drivers for the real SIP peers used by the interop tests: SIPp and baresip (headless).

See the project's interop notes: SIPp always with ``-i 127.0.0.1 -bind_local -mi 127.0.0.1``;
baresip with the aufile source, sndfile dumps and netstring JSON over ctrl_tcp.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.conftest import LOOPBACK, free_port, require_binary

DATA = Path(__file__).resolve().parents[1] / "data"
SIPP_DIR = DATA / "sipp"


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    logs: str


async def run_sipp(
    scenario: str,
    target: str | None,
    *,
    tmp: Path,
    port: int | None = None,
    transport: str = "u1",
    service: str = "1000",
    keys: dict[str, str] | None = None,
    extra: list[str] | None = None,
    calls: int = 1,
    timeout: float = 30.0,
    pause_ms: int = 1000,
    media_port: int | None = None,
    local: str = LOOPBACK,
) -> SippResult:
    """Run one SIPp scenario (a file in tests/data/sipp or a built-in ``-sn`` name) to its end.

    ``media_port`` is SIPp's ``-mp`` (it also binds the port 2 above): pass one from
    ``free_port(even=True, span=4)`` to capture what SIPp receives there."""
    sipp = require_binary("sipp")
    port = port or free_port()
    media_port = media_port or free_port(even=True, span=4)
    args = [sipp]
    if target is not None:
        args.append(target)
    if scenario.endswith(".xml"):
        args += ["-sf", str(SIPP_DIR / scenario)]
    else:
        args += ["-sn", scenario]
    args += [
        "-i", local, "-bind_local", "-mi", local, "-p", str(port), "-mp", str(media_port),
        "-t", transport, "-s", service, "-m", str(calls), "-d", str(pause_ms),
        "-timeout", f"{int(timeout)}s", "-timeout_error", "-nostdin",
        "-trace_err", "-error_file", str(tmp / "sipp_err.log"),
        "-trace_msg", "-message_file", str(tmp / "sipp_msg.log"),
    ]
    for key, value in (keys or {}).items():
        args += ["-key", key, value]
    args += extra or []
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout + 15)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    except asyncio.CancelledError:  # the test is done with this call: leave no SIPp behind
        proc.kill()
        await proc.wait()
        raise
    logs = ""
    for name in ("sipp_err.log", "sipp_msg.log"):
        path = tmp / name
        if path.exists():
            logs += f"--- {name}\n" + path.read_text(errors="replace")[-6000:]
    assert proc.returncode is not None
    return SippResult(proc.returncode, out.decode(errors="replace"),
                      err.decode(errors="replace"), logs)


def write_tone_wav(path: Path, freq: float, seconds: float, amplitude: int = 8000) -> None:
    """An 8 kHz mono 16-bit WAV with one sine tone (each test participant gets its own)."""
    t = np.arange(int(8000 * seconds)) / 8000.0
    pcm = (amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm.tobytes())


@dataclass
class Baresip:
    """One headless baresip process driven over ctrl_tcp (netstring JSON)."""

    workdir: Path
    source_wav: Path
    sip_port: int = 0
    ctrl_port: int = 0
    rtp_port: int = 0
    proc: asyncio.subprocess.Process | None = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    events: list[dict[str, object]] = field(default_factory=list)
    _event_waiters: list[tuple[str, asyncio.Future[dict[str, object]]]] = field(
        default_factory=list)
    _reader_task: asyncio.Task[None] | None = None

    async def start(self, *, lifetime: int = 60) -> None:
        binary = require_binary("baresip")
        self.sip_port = free_port(span=2)
        self.ctrl_port = free_port(kind=socket.SOCK_STREAM)
        self.rtp_port = free_port(even=True, span=2)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "dumps").mkdir(exist_ok=True)
        config = f"""
poll_method epoll
sip_listen {LOOPBACK}:{self.sip_port}
sip_transports udp
net_interface {LOOPBACK}
rtp_ports {self.rtp_port}-{self.rtp_port + 1}
rtp_tos 0
audio_source aufile,{self.source_wav}
audio_alert aufile,/dev/null
audio_srate 8000
audio_channels 1
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module sndfile.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen {LOOPBACK}:{self.ctrl_port}
snd_path {self.workdir / "dumps"}
"""
        (self.workdir / "config").write_text(config)
        (self.workdir / "accounts").write_text(
            f"<sip:tester@{LOOPBACK}:{self.sip_port}>;regint=0;answermode=manual;"
            "audio_codecs=PCMU,PCMA;ptime=20\n"
        )
        (self.workdir / "contacts").write_text("")
        self.proc = await asyncio.create_subprocess_exec(
            binary, "-f", str(self.workdir), "-t", str(lifetime),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=open(self.workdir / "stdout.log", "wb"),  # noqa: SIM115
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(100):
            try:
                self.reader, self.writer = await asyncio.open_connection(LOOPBACK, self.ctrl_port)
                break
            except OSError:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"baresip exited: {self.log()}") from None
                await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"baresip ctrl_tcp did not come up: {self.log()}")
        self._reader_task = asyncio.create_task(self._read_events())

    def log(self) -> str:
        path = self.workdir / "stdout.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    async def _read_events(self) -> None:
        assert self.reader is not None
        while True:
            try:
                length = await self.reader.readuntil(b":")
                payload = await self.reader.readexactly(int(length[:-1]))
                await self.reader.readexactly(1)  # trailing ','
            except (asyncio.IncompleteReadError, ValueError, ConnectionError):
                return
            message = json.loads(payload)
            self.events.append(message)
            kind = str(message.get("type", ""))
            for waited, future in list(self._event_waiters):
                if waited == kind and not future.done():
                    future.set_result(message)
                    self._event_waiters.remove((waited, future))

    async def command(self, command: str, params: str = "") -> None:
        assert self.writer is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.writer.write(str(len(body)).encode() + b":" + body + b",")
        await self.writer.drain()

    async def wait_event(self, kind: str, timeout: float = 10.0) -> dict[str, object]:
        for message in self.events:
            if message.get("type") == kind:
                return message
        future: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self._event_waiters.append((kind, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            kinds = [m.get("type") for m in self.events]
            raise AssertionError(f"baresip: no {kind} within {timeout}s; got {kinds}\n"
                                 f"{self.log()}") from None

    def received_wavs(self) -> list[Path]:
        return sorted((self.workdir / "dumps").glob("dump-*-dec.wav"))

    async def stop(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(ConnectionError):
                await self.command("quit")
            self.writer.close()
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader_task is not None:
            self._reader_task.cancel()
