"""The bridge as a user installs it: the wheel built from the package, installed (not editable)
into a fresh venv in a temporary directory outside the checkout, ``bridge serve`` started from
that venv; a real SIPp caller goes through the IVR (language key and PIN as RFC 4733 events)
into a room. And ``bridge serve`` refuses to start, in one line with exit 1, when a prompt the
IVR can play is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

from bridge.conference.enums import LeaveReason
from tests.conftest import LOOPBACK, free_port, require_binary, rtp_port_block
from tests.interop.pcapgen import CallStream, digits_at, write_stream_pcap
from tests.interop.peers import run_sipp
from tests.interop.test_conference_e2e import (
    KEYS_FROM,
    LANGUAGE_KEY,
    NUMBER,
    prepare_store,
    wait_for_line,
)

REPO = Path(__file__).resolve().parents[2]
PIN = "61820437"


async def _run(*args: str | Path, cwd: Path, timeout: float = 120.0) -> str:
    proc = await asyncio.create_subprocess_exec(
        *map(str, args), cwd=cwd, env=_clean_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{text[-3000:]}"
    return text


def _clean_env() -> dict[str, str]:
    """The environment without anything that points Python at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(REPO)))
    env["BRIDGE_WEB_LISTEN"] = f"{LOOPBACK}:0"  # the HTTP API on an ephemeral port
    return env


async def _build_and_install(tmp: Path) -> Path:
    """Build the wheel from a copy of the sources (the build leaves nothing in the checkout)
    and install it into a fresh venv; returns the venv's ``bin``."""
    src = tmp / "src"
    src.mkdir()
    shutil.copytree(REPO / "bridge", src / "bridge",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    await _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist",
               src, cwd=tmp)
    [wheel] = (tmp / "dist").glob("bridge-*.whl")
    await _run(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp)
    bin_dir = tmp / "venv" / "bin"
    await _run(bin_dir / "pip", "install", "-q", wheel, cwd=tmp)
    where = await _run(bin_dir / "python", "-c", "import bridge; print(bridge.__file__)",
                       cwd=tmp)
    assert where.strip().startswith(str(tmp / "venv")), where  # not the checkout
    return bin_dir


async def test_the_installed_wheel_answers_a_call_and_the_ivr_lets_it_into_a_room(
        tmp_path: Path) -> None:
    require_binary("sipp")  # fail (CI) or skip now, not after the build
    bin_dir = await _build_and_install(tmp_path)
    db = tmp_path / "run" / "bridge.sqlite3"
    db.parent.mkdir()
    store, account = await prepare_store(db)
    room = await store.create_room(account_id=account.id, name="Installed",
                                   participant_pin=PIN, moderator_pin="37402918")
    sip_port, (low, high) = free_port(), rtp_port_block()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(bin_dir / "bridge"), "serve", "--db", str(db),
            "--sip-listen", f"{LOOPBACK}:{sip_port}", "--rtp-ports", f"{low}-{high}",
            cwd=db.parent, env=_clean_env(), stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=asyncio.subprocess.STDOUT)
    try:
        await wait_for_line(log, "SIP on", proc)
        assert "prompts loaded from the packaged prompts" in log.read_text()
        workdir = tmp_path / "caller"
        workdir.mkdir()
        presses = digits_at(LANGUAGE_KEY, KEYS_FROM) + digits_at(f"{PIN}#", KEYS_FROM + 0.5)
        await asyncio.to_thread(write_stream_pcap, workdir / "call.pcap",
                                CallStream(seconds=8.0, tone_hz=440.0, digits=presses))
        sipp = asyncio.create_task(run_sipp(
            "conf_caller.xml", f"{LOOPBACK}:{sip_port}", tmp=workdir, service=NUMBER,
            keys={"te_pt": "101", "caller": "+4989777"}, pause_ms=7000, timeout=30.0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20.0
        while not await store.live_call_records(room.id):  # the caller is in the room
            assert not sipp.done(), "the call ended before joining: " + log.read_text()[-3000:]
            assert loop.time() < deadline, "nobody joined: " + log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        result = await sipp
        assert result.returncode == 0, result.stdout[-2000:] + result.logs
        while await store.live_call_records(room.id):  # the BYE reached the bridge
            assert loop.time() < deadline + 20.0, "the record stays open"
            await asyncio.sleep(0.05)
        [record] = await store.call_history(room_id=room.id)
        assert record.leave_reason is LeaveReason.HANGUP and "+4989777@" in record.caller
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0, log.read_text()[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await store.close()


async def test_serve_refuses_to_start_when_a_prompt_is_missing(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(REPO / "bridge" / "prompts", prompts)
    (prompts / "fr" / "you_were_removed.wav").unlink()
    (prompts / "de" / "numbers" / "42.wav").unlink()
    config = tmp_path / "bridge.toml"
    config.write_text(f'prompts_dir = "{prompts}"\ndb_path = "{tmp_path / "b.sqlite3"}"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "serve", "--config", str(config),
        "--sip-listen", f"{LOOPBACK}:{free_port()}", cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert out == b""
    [line] = err.decode().splitlines()
    assert "prompts missing" in line and "de/numbers/42" in line
    assert "fr/you_were_removed" in line
    assert not (tmp_path / "b.sqlite3").exists()  # refused before anything else
