"""``bridge replay`` on bad input: exit 2 and one line on stderr, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main

TRACE = Path(__file__).resolve().parents[1] / "data" / "traces" / "sipp_udp.pcap"


@pytest.mark.parametrize(("content", "extra", "message"), [
    (b"", [], "empty file"),
    (TRACE.read_bytes()[:-100], [], "truncated capture"),
    (b"\xd4\xc3\xb2\xa1" + bytes(20) , [], "no SIP"),
    (b"not a capture at all", [], "not a pcap or pcapng"),
    (TRACE.read_bytes(), ["--call", "nope@x"], "unknown Call-ID 'nope@x'"),
    (TRACE.read_bytes(), ["--speed", "0"], "--speed"),
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         content: bytes, extra: list[str], message: str) -> None:
    path = tmp_path / "t.pcap"
    path.write_bytes(content)
    code = main(["replay", str(path), "--target", "127.0.0.1:9", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("bridge replay: ")


def test_a_missing_file_and_a_bad_target_exit_2(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "none.pcap"), "--target", "127.0.0.1:9"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["replay", str(TRACE), "--target", "nohostport"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
