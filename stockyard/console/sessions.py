"""Console sessions: what a signed-in browser's cookie stands for, kept in Redis.

The cookie holds a random session id and nothing else. Redis holds, under a hash of that id
(a copy of Redis yields no usable cookie), the API token pair the sign-in was granted, sealed
with a key derived from STOCKYARD_SECRET_KEY, and the session's CSRF token. Every console
request runs the API's own pipeline on that access token, so whatever ends the token family
(sign-out everywhere, a deactivation, a role change, refresh-token reuse) ends the session
at its next click. Idle timeout: the key's TTL, renewed by every request (GETEX, one round
trip). Absolute timeout: the sign-in time, sealed in the record.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

from cryptography.fernet import InvalidToken as UnreadableSeal

from stockyard.core.errors import ServiceUnavailable
from stockyard.core.redis import REDIS_ERRORS, RedisClient
from stockyard.core.sealing import sealer
from stockyard.core.settings import Settings

# An access token this close to its expiry is refreshed before it is used: the request that
# holds the refresh lock rotates it while the others still use the current one.
REFRESH_MARGIN_SECONDS = 120
REFRESH_LOCK_MILLISECONDS = 10_000
# What a successful form post leaves for the page it redirects to (post/redirect/get: a
# reload never posts twice), a one-time secret included: read once, gone within the minute.
FLASH_SECONDS = 60
# Releases the refresh lock only for its holder: one whose lock timed out (a refresh slower
# than the lock) must not release the lock a later request took meanwhile.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SessionStoreUnavailable(ServiceUnavailable):
    code = "session_store_unavailable"
    message = "Console sessions are unavailable for a moment (Redis); try again shortly."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


@contextmanager
def _redis_call() -> Iterator[None]:
    """Redis unreachable: the console answers 503 (a page saying so), never a 500."""
    try:
        yield
    except REDIS_ERRORS:
        raise SessionStoreUnavailable() from None


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    access_token: str
    access_expires_at: float
    # None for platform staff: their tokens are short and never refreshed.
    refresh_token: str | None
    csrf_token: str
    signed_in_at: float
    email: str
    # The tenant's slug, or None for platform staff.
    tenant: str | None
    role: str

    @property
    def is_staff(self) -> bool:
        return self.tenant is None

    def needs_refresh(self, now: float) -> bool:
        return self.access_expires_at - now < REFRESH_MARGIN_SECONDS

    def with_tokens(
        self, access_token: str, expires_in: int, refresh_token: str | None
    ) -> ConsoleSession:
        return replace(
            self,
            access_token=access_token,
            access_expires_at=time.time() + expires_in,
            refresh_token=refresh_token,
        )


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


class ConsoleSessions:
    def __init__(self, redis: RedisClient, settings: Settings) -> None:
        assert settings.secret_key is not None
        self._redis = redis
        self._seal = sealer(settings.secret_key.get_secret_value(), "console-session")
        self._prefix = settings.redis_key_prefix
        self._idle = settings.console_idle_timeout_seconds
        self._absolute = settings.console_absolute_timeout_seconds

    def _key(self, session_id: str) -> str:
        # One hash tag per session: its record and its refresh lock share a Redis Cluster slot.
        digest = hashlib.sha256(session_id.encode()).hexdigest()[:40]
        return f"{self._prefix}console:{{{digest}}}"

    def _ttl(self, record: ConsoleSession, now: float) -> int:
        return max(1, min(self._idle, int(record.signed_in_at + self._absolute - now)))

    async def save(self, session_id: str, record: ConsoleSession) -> None:
        sealed = self._seal.encrypt(json.dumps(asdict(record)).encode())
        with _redis_call():
            await self._redis.set(self._key(session_id), sealed, ex=self._ttl(record, time.time()))

    async def load(self, session_id: str) -> ConsoleSession | None:
        """The session, its idle timer renewed; None when it ended, timed out or never was."""
        key = self._key(session_id)
        with _redis_call():
            sealed = await self._redis.getex(key, ex=self._idle)
        if sealed is None:
            return None
        try:
            record = ConsoleSession(**json.loads(self._seal.decrypt(sealed)))
        except (UnreadableSeal, TypeError, ValueError):
            await self.destroy(session_id)
            return None
        now = time.time()
        if now >= record.signed_in_at + self._absolute:
            await self.destroy(session_id)
            return None
        return record

    async def destroy(self, session_id: str) -> None:
        with _redis_call():
            await self._redis.delete(self._key(session_id))

    async def lock_refresh(self, session_id: str) -> str | None:
        """One request per session rotates its refresh token: two at once would present the
        same token twice, which reuse detection answers by revoking the family. Returns the
        lock's own value (to release it with), or None when another request holds it."""
        holder = secrets.token_hex(16)
        with _redis_call():
            acquired = await self._redis.set(
                self._key(session_id) + ":refresh", holder, nx=True, px=REFRESH_LOCK_MILLISECONDS
            )
        return holder if acquired else None

    async def unlock_refresh(self, session_id: str, holder: str) -> None:
        with _redis_call():
            await self._redis.eval(_RELEASE_LOCK, 1, self._key(session_id) + ":refresh", holder)

    def _flash_key(self, session_id: str, page: str) -> str:
        # One per page: a message left for one page is never shown (or misread) by another.
        return f"{self._key(session_id)}:flash:{hashlib.sha256(page.encode()).hexdigest()[:16]}"

    async def flash(self, session_id: str, page: str, message: dict[str, str]) -> None:
        sealed = self._seal.encrypt(json.dumps(message).encode())
        with _redis_call():
            await self._redis.set(self._flash_key(session_id, page), sealed, ex=FLASH_SECONDS)

    async def take_flash(self, session_id: str, page: str) -> dict[str, str] | None:
        with _redis_call():
            sealed = await self._redis.getdel(self._flash_key(session_id, page))
        if sealed is None:
            return None
        try:
            message: dict[str, str] = json.loads(self._seal.decrypt(sealed))
        except (UnreadableSeal, ValueError):
            return None
        return message
