"""Credentials and client addresses of the web API (no sockets needed)."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from bridge.config import Config
from bridge.web.auth import TOKEN_PREFIX, hash_password, hash_token, new_token, verify_password
from bridge.web.state import STATE, WebState, client_address


def test_tokens_are_random_and_stored_as_sha256() -> None:
    first, second = new_token(), new_token()
    assert first != second and first.startswith(TOKEN_PREFIX) and len(first) > 40
    assert hash_token(first) == hashlib.sha256(first.encode()).hexdigest()


async def test_passwords_are_argon2id_and_verified_off_the_loop() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    loop = asyncio.get_running_loop()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = loop.create_task(ticker())
    try:
        assert await verify_password(hashed, "correct horse") is True
        assert await verify_password(hashed, "wrong") is False
        assert await verify_password("not a hash", "x") is False
    finally:
        task.cancel()
    assert ticks > 0  # the loop ran while argon2 worked in the executor


def _request(peer: str, forwarded: str | None, proxies: tuple[str, ...]) -> web.Request:
    app = web.Application()
    app[STATE] = WebState(store=None, config=Config(),  # type: ignore[arg-type]
                          trusted_proxies=tuple(ipaddress.ip_network(p) for p in proxies))
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    request = make_mocked_request("GET", "/api/v1/rooms", headers=headers, app=app)
    return request.clone(remote=peer)


@pytest.mark.parametrize(("peer", "forwarded", "proxies", "client"), [
    ("203.0.113.5", None, (), "203.0.113.5"),
    ("203.0.113.5", "198.51.100.7", (), "203.0.113.5"),  # an untrusted peer cannot claim
    ("10.0.0.2", "198.51.100.7", ("10.0.0.0/8",), "198.51.100.7"),
    ("10.0.0.2", "198.51.100.9, 198.51.100.7", ("10.0.0.0/8",), "198.51.100.7"),
    ("10.0.0.2", "198.51.100.9, 10.0.0.3", ("10.0.0.0/8",), "198.51.100.9"),
])
def test_client_address_trusts_only_configured_proxies(
        peer: str, forwarded: str | None, proxies: tuple[str, ...], client: str) -> None:
    assert client_address(_request(peer, forwarded, proxies)) == client
