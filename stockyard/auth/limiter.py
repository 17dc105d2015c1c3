"""Per-token rate limiting and the revocation cache, in one Redis round trip.

A GCRA bucket per token family (`sid`), computed by a Lua script on Redis server time, so every
API worker shares it and clocks can't drift apart. The same script reads the family's cached
revocation state, so the revocation check costs no extra round trip. PostgreSQL stays the
source of truth: when Redis has no state for a sid (new, expired, or lost in a restart or
FLUSHALL) the caller checks PostgreSQL and writes the answer back, and `SET NX` for "ok"
against a plain `SET` for "revoked" keeps a racing revocation from being overwritten.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from stockyard.auth.tokens import LEEWAY_SECONDS
from stockyard.core import metrics
from stockyard.core.errors import RateLimited, ServiceUnavailable
from stockyard.core.principal import AccessClaims
from stockyard.core.redis import REDIS_ERRORS, RedisClient

log = structlog.get_logger()

WINDOW_SECONDS = 60
OUTAGE_WARNING_INTERVAL = 10.0
DRAIN_SECONDS = 5.0

_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('GET', KEYS[2])
if state == 'revoked' or (KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1) then
  return {0, 0, 0, 0, 'revoked'}
end
if not state then state = '' end
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, 0, allow_at - now, tat - now, state}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now, state}
"""


@dataclass(frozen=True, slots=True)
class RevokedToken:
    session_id: uuid.UUID
    token_id: str
    ttl_seconds: int


def revoked_token_of(claims: AccessClaims) -> RevokedToken:
    """An access token's revocation mark, kept as long as the token could still be accepted
    (its expiry plus the verification leeway)."""
    usable_until = claims.expires_at + LEEWAY_SECONDS
    return RevokedToken(claims.session_id, claims.token_id, usable_until - int(time.time()) + 1)


class Revocation(Enum):
    LIVE = "ok"
    REVOKED = "revoked"
    UNKNOWN = ""


class ServiceState(Enum):
    UP = "up"
    DOWN = "down"


class ServiceDegraded(ServiceUnavailable):
    code = "rate_limiter_unavailable"
    message = "The rate limiter is unavailable; retry shortly."


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after_seconds: int
    revocation: Revocation
    policy: str = "token"
    burst: int = 0

    def headers(self) -> dict[str, str]:
        """RateLimit-Policy / RateLimit (IETF httpapi-ratelimit-headers), as Structured Fields.

        A GCRA bucket enforces two things, so the policy lists both: the sustained rate
        ("token": q per 60 s) and the burst ("token-burst": q at once, refilled over w
        seconds). RateLimit reports the burst, the one a client runs into: r requests may be
        sent now, and t seconds until the bucket is full again, or, when refused, until the
        next request is allowed (then equal to Retry-After)."""
        burst_window = max(math.ceil(self.burst * WINDOW_SECONDS / self.limit), 1)
        seconds = self.reset_seconds if self.allowed else self.retry_after_seconds
        return {
            "RateLimit-Policy": (
                f'"{self.policy}";q={self.limit};w={WINDOW_SECONDS}, '
                f'"{self.policy}-burst";q={self.burst};w={burst_window}'
            ),
            "RateLimit": f'"{self.policy}-burst";r={self.remaining};t={seconds}',
        }

    def raise_if_limited(self) -> None:
        if not self.allowed:
            raise RateLimited(
                headers={**self.headers(), "Retry-After": str(self.retry_after_seconds)}
            )


UNLIMITED_FAIL_OPEN = Decision(True, 0, 0, 0, 0, Revocation.UNKNOWN)


class RateLimiter:
    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str,
        fail_open: bool,
        revocation_ttl_seconds: int,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._fail_open = fail_open
        self._revocation_ttl = revocation_ttl_seconds
        self._script = redis.register_script(_GCRA)
        self._last_warning = float("-inf")
        self.state = ServiceState.UP
        # Revocations written while Redis was away (or before this worker started) are
        # re-seeded from PostgreSQL by the revocation sync task while this is set; it is
        # cleared only by a re-seed whose PostgreSQL read began after the last failed write.
        self.needs_reseed = True
        self._write_failed_at = time.monotonic()
        self._after_commit_writes: set[asyncio.Task[None]] = set()

    def _bucket_keys(self, bucket: str) -> list[str]:
        # One hash tag per bucket: its keys land in one Redis Cluster slot.
        return [f"{self._prefix}rl:{{{bucket}}}", f"{self._prefix}rl:{{{bucket}}}:auth"]

    def _token_key(self, session_id: uuid.UUID, token_id: str) -> str:
        """Present while one access token of the family is revoked (RFC 7009)."""
        return f"{self._prefix}rl:{{{session_id}}}:jti:{token_id}"

    async def _run(
        self,
        bucket: str,
        *,
        policy: str,
        per_minute: int,
        burst: int,
        token_key: str | None = None,
    ) -> Decision | None:
        interval = WINDOW_SECONDS * 1000 / per_minute
        keys = self._bucket_keys(bucket) + ([token_key] if token_key else [])
        try:
            # redis-py's Script calls EVALSHA and reloads the script on NOSCRIPT.
            reply = await self._script(keys=keys, args=[interval, burst])
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            return None
        self._mark_up()
        allowed, remaining, retry_ms, reset_ms, state = reply
        return Decision(
            allowed=bool(allowed),
            limit=per_minute,
            remaining=max(int(remaining), 0),
            reset_seconds=max(math.ceil(int(reset_ms) / 1000), 0),
            retry_after_seconds=max(math.ceil(int(retry_ms) / 1000), 1),
            revocation=Revocation(state.decode() if isinstance(state, bytes) else state),
            policy=policy,
            burst=burst,
        )

    def _mark_up(self) -> None:
        if self.state is ServiceState.DOWN:
            log.info("redis_recovered")
            self._reseed_from_now()
        self.state = ServiceState.UP

    def _reseed_from_now(self) -> None:
        self._write_failed_at = time.monotonic()
        self.needs_reseed = True

    def reseeded(self, read_started_at: float) -> None:
        """A re-seed wrote every revocation PostgreSQL held when its read began (a monotonic
        time). It settles the pending re-seed only if no revocation write failed since: one
        that failed before its transaction committed may be missing from that read."""
        if self._write_failed_at < read_started_at:
            self.needs_reseed = False

    def _mark_down(self, exc: BaseException) -> None:
        self.state = ServiceState.DOWN
        now = time.monotonic()
        if now - self._last_warning >= OUTAGE_WARNING_INTERVAL:
            self._last_warning = now
            log.warning(
                "redis_unavailable",
                error=type(exc).__name__,
                fail_open=self._fail_open,
            )

    async def check_session(
        self, session_id: uuid.UUID, *, token_id: str, per_minute: int, burst: int
    ) -> Decision:
        """Count one request against the token family and report its revocation state: the
        family's, or this one access token's, in the same single round trip."""
        decision = await self._run(
            str(session_id),
            policy="token",
            per_minute=per_minute,
            burst=burst,
            token_key=self._token_key(session_id, token_id),
        )
        return decision if decision is not None else self._unavailable()

    async def check_key(
        self, bucket: str, *, policy: str, per_minute: int, burst: int | None = None
    ) -> Decision:
        """Count one attempt against a bucket (a token family, a client IP, a login name).
        With Redis away: let it through (fail open) or refuse with 503 (fail closed)."""
        decision = await self._run(
            bucket, policy=policy, per_minute=per_minute, burst=burst or per_minute
        )
        return decision if decision is not None else self._unavailable()

    def _unavailable(self) -> Decision:
        if not self._fail_open:
            raise ServiceDegraded()
        metrics.REDIS_FAIL_OPEN.inc()
        return UNLIMITED_FAIL_OPEN

    async def remember(self, session_id: uuid.UUID, revocation: Revocation) -> None:
        """Cache what PostgreSQL said about a family. Best effort: PostgreSQL stays the truth."""
        key = self._bucket_keys(str(session_id))[1]
        if revocation is Revocation.REVOKED:
            await self.revoke([session_id])
            return
        try:
            await self._redis.set(key, revocation.value, ex=self._revocation_ttl, nx=True)
        except REDIS_ERRORS as exc:
            self._mark_down(exc)

    async def revoke(
        self, session_ids: list[uuid.UUID], tokens: Sequence[RevokedToken] = ()
    ) -> None:
        """Mark families, and single access tokens, revoked: one pipelined round trip however
        many there are. A token's mark lives as long as the token would have."""
        if not session_ids and not tokens:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for session_id in session_ids:
                    key = self._bucket_keys(str(session_id))[1]
                    pipe.set(key, Revocation.REVOKED.value, ex=self._revocation_ttl)
                for token in tokens:
                    key = self._token_key(token.session_id, token.token_id)
                    pipe.set(key, Revocation.REVOKED.value, ex=max(token.ttl_seconds, 1))
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            self._reseed_from_now()

    async def revoke_on_commit(
        self,
        session: AsyncSession,
        session_ids: list[uuid.UUID],
        tokens: Sequence[RevokedToken] = (),
    ) -> None:
        """Mark families revoked now, so the revocation bites at once, and again just after
        the transaction that records it commits. Between the two, a request that asked
        PostgreSQL before that commit may have cached "ok" (after a FLUSHALL, or because the
        first write failed); the second write, a plain SET, overwrites it. If the second
        write fails too, the re-seed stays pending until PostgreSQL has been read after it,
        and so after the commit. If the transaction rolls back instead, the first write is
        taken back (the state is forgotten, so the next request asks PostgreSQL)."""
        if not session_ids and not tokens:
            return
        await self.revoke(session_ids, tokens)
        loop = asyncio.get_running_loop()
        settled = False

        # Savepoints fire these events too: only the outermost transaction's end counts.
        def after_commit(ended: Session) -> None:
            nonlocal settled
            if settled or ended.in_nested_transaction():
                return
            settled = True
            self._in_background(loop, self.revoke(session_ids, tokens))

        def after_rollback(ended: Session) -> None:
            nonlocal settled
            if settled or ended.in_nested_transaction():
                return
            settled = True
            self._in_background(loop, self._forget(session_ids, tokens))

        event.listen(session.sync_session, "after_commit", after_commit)
        event.listen(session.sync_session, "after_rollback", after_rollback)

    def _in_background(
        self, loop: asyncio.AbstractEventLoop, write: Coroutine[Any, Any, None]
    ) -> None:
        task = loop.create_task(write)
        self._after_commit_writes.add(task)
        task.add_done_callback(self._after_commit_writes.discard)

    async def _forget(self, session_ids: list[uuid.UUID], tokens: Sequence[RevokedToken]) -> None:
        keys = [self._bucket_keys(str(s))[1] for s in session_ids] + [
            self._token_key(t.session_id, t.token_id) for t in tokens
        ]
        try:
            await self._redis.delete(*keys)
        except REDIS_ERRORS as exc:
            self._mark_down(exc)

    async def drain(self) -> None:
        """Let the writes that follow commits finish (a few seconds at most) before the
        connection closes."""
        if self._after_commit_writes:
            await asyncio.wait(set(self._after_commit_writes), timeout=DRAIN_SECONDS)

    async def ping(self) -> bool:
        """True when Redis answers; also how the sync task notices that it is back. A cluster
        node answers PING even while the cluster refuses every key (CLUSTERDOWN), so there
        the probe is a read of a key."""
        try:
            if isinstance(self._redis, RedisCluster):
                await self._redis.exists(f"{self._prefix}rl:{{health}}")
            else:
                await self._redis.ping()
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True


async def get_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
