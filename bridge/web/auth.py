"""Credentials of the HTTP API: bearer tokens (only their sha256 stored) and argon2id passwords.

A token is ``brg_`` followed by 32 random bytes (URL-safe base64); the store keeps the sha256
hex digest, so a leaked database yields no usable token. Passwords (for the web area) are
argon2id hashes (argon2-cffi); verifying costs about 100 ms of CPU, so
:func:`verify_password` runs it in an executor, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "TOKEN_PREFIX",
    "hash_password",
    "hash_token",
    "new_token",
    "verify_password",
]

TOKEN_PREFIX = "brg_"

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


def new_token() -> str:
    """A fresh API token (shown once to the user)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the store keeps of a token: its sha256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str, password: str) -> bool:
    """Check a password against its argon2 hash in the default executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _verify, password_hash, password)
