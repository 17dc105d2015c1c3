"""Password hashing with argon2id: off the event loop, on a small pool of its own, bounded.

argon2 is deliberately expensive (tens of milliseconds of CPU and its memory per call). Run on
the default thread pool it would compete with everything else that uses it, and a flood of
sign-ins would queue without limit. Here at most one hash per two CPUs runs at once, a short
queue waits behind them, and anything past that is turned away at once with 503 `busy`: sign-in
floods slow sign-ins, never the rest of the API. Callers hold no database connection while
they hash (see the sign-in and password-change flows).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from passlib.context import CryptContext

from stockyard.core.errors import ServiceUnavailable

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024

T = TypeVar("T")

_context = CryptContext(schemes=["argon2"], deprecated="auto", argon2__type="ID")

# Verified against when the account does not exist, so that an unknown email costs the same
# time as a wrong password and response timing does not reveal which emails are registered.
_DUMMY_HASH = _context.hash("stockyard-dummy-password-for-timing")


class HashingBusy(ServiceUnavailable):
    code = "busy"
    message = "Too many sign-ins are being checked right now; retry shortly."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


class HashingPool:
    """`workers` hashes at once, `queue` more waiting; the rest answer 503 `busy`."""

    def __init__(self, *, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._capacity = workers + queue
        self._admitted = 0

    async def run(self, work: Callable[[], T]) -> T:
        if self._admitted >= self._capacity:
            raise HashingBusy()
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            self._admitted -= 1


# Half the CPUs (at least one): hashing at full tilt still leaves a core for the event loop
# that serves everything else.
_WORKERS = max((os.cpu_count() or 1) // 2, 1)
pool = HashingPool(workers=_WORKERS, queue=8 * _WORKERS)


async def hash_password(password: str) -> str:
    return await pool.run(lambda: _context.hash(password))


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Check a password; with no hash (unknown account) do the same work and answer False."""
    if password_hash is None:
        await pool.run(lambda: _context.verify(password, _DUMMY_HASH))
        return False
    return await pool.run(lambda: _context.verify(password, password_hash))
