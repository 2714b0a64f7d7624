"""``[web]`` configuration, BRIDGE_WEB_LISTEN and the JSON log format."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from bridge.config import Config, ConfigError, WebConfig, load_config
from bridge.logs import setup_logging


def test_web_defaults_file_and_environment(tmp_path: Path) -> None:
    assert Config().validate().web.address() == ("127.0.0.1", 8080)
    path = tmp_path / "b.toml"
    path.write_text('log_format = "json"\n[web]\nlisten = "0.0.0.0:9443"\n'
                    'tls_cert = "c.pem"\ntls_key = "k.pem"\ntrusted_proxies = ["10.0.0.0/8"]\n')
    config = load_config(path, env={}).validate()
    assert config.web.address() == ("0.0.0.0", 9443)
    assert config.web.trusted_proxies == ("10.0.0.0/8",)
    assert config.log_format == "json"
    env = load_config(path, env={"BRIDGE_WEB_LISTEN": "127.0.0.1:0"}).validate()
    assert env.web.address() == ("127.0.0.1", 0)
    assert WebConfig(listen="").address() is None


@pytest.mark.parametrize("toml", [
    '[web]\nlisten = "127.0.0.1:99999"\n',
    '[web]\ntls_cert = "only-the-cert.pem"\n',
    '[web]\ntrusted_proxies = ["not a net"]\n',
    'log_format = "xml"\n',
    '[web]\ncolour = "red"\n',
])
def test_bad_web_settings(tmp_path: Path, toml: str) -> None:
    path = tmp_path / "b.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError):
        load_config(path, env={}).validate()


def test_json_logs_are_one_object_per_line() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    setup_logging("INFO", "json", stream, force=True)
    try:
        logging.getLogger("bridge.test").info("call %s\nanswered", "c1", extra={"room": 7})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("bridge.test").exception("failed")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "call c1\nanswered" and first["room"] == 7
    assert first["level"] == "INFO" and first["logger"] == "bridge.test"
    assert "ValueError: boom" in second["exc_info"]
