"""A real bridge (BridgeApp) in the test's event loop, on free loopback ports."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.config import Config, RtpConfig, SipConfig
from bridge.runtime.app import BridgeApp
from tests.conftest import LOOPBACK, free_port, rtp_port_block


def bridge_config(tmp_path: Path, **sip: object) -> Config:
    rtp_low, rtp_high = rtp_port_block()
    return Config(
        sip=dataclasses.replace(SipConfig(), listen_host=LOOPBACK, listen_port=free_port(),
                                **sip),  # type: ignore[arg-type]
        rtp=RtpConfig(bind_host=LOOPBACK, port_low=rtp_low, port_high=rtp_high),
        db_path=tmp_path / "bridge.sqlite3",
    )


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[BridgeApp]:
    app = BridgeApp(bridge_config(tmp_path))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
