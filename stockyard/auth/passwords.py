"""Password hashing with argon2id, always off the event loop."""

from __future__ import annotations

import asyncio

from passlib.context import CryptContext

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024

_context = CryptContext(schemes=["argon2"], deprecated="auto", argon2__type="ID")

# Verified against when the account does not exist, so that an unknown email costs the same
# time as a wrong password and response timing does not reveal which emails are registered.
_DUMMY_HASH = _context.hash("stockyard-dummy-password-for-timing")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_context.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Check a password; with no hash (unknown account) do the same work and answer False."""
    if password_hash is None:
        await asyncio.to_thread(_context.verify, password, _DUMMY_HASH)
        return False
    return await asyncio.to_thread(_context.verify, password, password_hash)
