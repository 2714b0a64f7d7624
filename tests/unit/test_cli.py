"""The command line: bad input gets one line on stderr and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["dance"], "invalid choice: 'dance'"),
        (["serve", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["serve", "--sip-listen", "127.0.0.1:99999"], "bad port"),
        (["serve", "--sip-listen", "127.0.0.1:abc"], "bad port"),
        (["serve", "--rtp-ports", "30000"], "expected LOW-HIGH"),
        (["serve", "--rtp-ports", "40000-30000"], "LOW < HIGH"),
        (["serve", "--log-level", "LOUD"], "invalid choice: 'LOUD'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message in err
    assert err.startswith("bridge")


def test_bad_config_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('[sip]\nlisten_port = "five"\n')
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == "bridge: sip.listen_port: expected an integer\n"

    config.write_text("[sip]\nlisten_prot = 5060\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "unknown setting 'sip.listen_prot'" in capsys.readouterr().err

    config.write_text("[sip\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert capsys.readouterr().err.count("\n") == 1

    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read config" in capsys.readouterr().err


def test_bad_network_in_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('[sip]\nallowed_networks = ["10.0.0.0/33"]\n')
    assert main(["serve", "--config", str(config)]) == 2
    assert "sip.allowed_networks" in capsys.readouterr().err


def test_conference_settings_are_validated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('[conference]\ndefault_country = "Germany"\n')
    assert main(["serve", "--config", str(config)]) == 2
    assert "conference.default_country" in capsys.readouterr().err
    config.write_text('[conference]\ntrusted_networks = ["trunk"]\n')
    assert main(["serve", "--config", str(config)]) == 2
    assert "conference.trusted_networks" in capsys.readouterr().err
