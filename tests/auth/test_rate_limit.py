"""The per-token limiter and revocation cache against a real Redis of the test's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import http_sf
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from stockyard.core.embedded import EmbeddedServices
from stockyard.core.settings import Settings
from tests.conftest import make_settings, running_app
from tests.support.helpers import PASSWORD, bearer, password_login, refresh, signup
from tests.support.services import TestServices


class Stack:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, redis: EmbeddedServices) -> None:
        self.app, self.client, self.redis = app, client, redis

    async def raw_redis(self) -> Redis:
        assert self.redis.redis_url is not None
        return Redis.from_url(self.redis.redis_url)


@pytest.fixture
async def stack_factory(
    services: TestServices, settings: Settings, tmp_path: Path
) -> AsyncIterator[Any]:
    """Start the API on a Redis that this test alone owns (it will stop or flush it)."""
    redis = EmbeddedServices(tmp_path)
    url = redis.start_redis()
    contexts = []

    async def start(**overrides: Any) -> Stack:
        values = {"redis_url": url, "redis_key_prefix": "", **overrides}
        context = running_app(make_settings(services, **values))
        contexts.append(context)
        app, client = await context.__aenter__()
        return Stack(app, client, redis)

    yield start
    for context in contexts:
        await context.__aexit__(None, None, None)
    redis.stop()


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/v1/me", headers=bearer(token))


def policies(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """RateLimit-Policy parsed by an RFC 8941 Structured Fields parser: name -> parameters."""
    parsed = http_sf.parse(response.headers["RateLimit-Policy"].encode(), tltype="list")
    return {name: dict(parameters) for name, parameters in parsed}


def ratelimit(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    [(name, parameters)] = http_sf.parse(response.headers["RateLimit"].encode(), tltype="list")
    return name, dict(parameters)


async def test_burst_allowed_then_429_with_headers(stack_factory: Any) -> None:
    """The headers say what the limiter enforces: 60 a minute, 5 at once (refilled over 5 s);
    r counts down the burst; on the 429, t and Retry-After agree."""
    stack = await stack_factory(rate_limit_per_minute=60, rate_limit_burst=5)
    tenant = await signup(stack.client)
    responses = [await me(stack.client, tenant.access_token) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    for remaining, response in zip([4, 3, 2, 1, 0], responses, strict=False):
        assert policies(response) == {
            "token": {"q": 60, "w": 60},
            "token-burst": {"q": 5, "w": 5},
        }
        name, current = ratelimit(response)
        assert name == "token-burst" and current["r"] == remaining and current["t"] >= 1
    limited = responses[-1]
    assert limited.json()["error"]["code"] == "rate_limited"
    retry_after = int(limited.headers["Retry-After"])
    assert retry_after >= 1
    assert ratelimit(limited) == ("token-burst", {"r": 0, "t": retry_after})

    await asyncio.sleep(retry_after)
    assert (await me(stack.client, tenant.access_token)).status_code == 200


async def test_two_sign_ins_have_independent_buckets_and_refresh_shares_one(
    stack_factory: Any,
) -> None:
    stack = await stack_factory(rate_limit_per_minute=6, rate_limit_burst=2)
    tenant = await signup(stack.client)
    second = (await password_login(stack.client, slug=tenant.slug, email=tenant.owner_email)).json()
    assert [(await me(stack.client, tenant.access_token)).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    assert (await me(stack.client, second["access_token"])).status_code == 200
    refreshed = (await refresh(stack.client, tenant.refresh_token)).json()
    assert (await me(stack.client, refreshed["access_token"])).status_code == 429


async def test_tenant_override_applies(stack_factory: Any, owner_db: Any) -> None:
    stack = await stack_factory(rate_limit_per_minute=600, rate_limit_burst=50)
    tenant = await signup(stack.client)
    await owner_db.execute(
        "UPDATE tenant SET rate_limit_per_minute = 6, rate_limit_burst = 1 WHERE id = $1",
        tenant.id,
    )
    stack.app.state.services.tenant_limits.forget(tenant.id)
    first = await me(stack.client, tenant.access_token)
    assert policies(first)["token"] == {"q": 6, "w": 60}
    assert (await me(stack.client, tenant.access_token)).status_code == 429


async def test_one_redis_round_trip_per_authenticated_request(stack_factory: Any) -> None:
    stack = await stack_factory()
    tenant = await signup(stack.client)
    await me(stack.client, tenant.access_token)  # first sight of the family caches its state
    client = stack.app.state.services.redis
    sent: list[str] = []
    original = client.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await original(*args, **options)

    client.execute_command = counting
    try:
        response = await me(stack.client, tenant.access_token)
    finally:
        client.execute_command = original
    assert response.status_code == 200
    assert [c for c in sent if c != "PING"] == ["EVALSHA"]


async def test_fail_open_lets_requests_through_and_checks_revocation_in_postgres(
    stack_factory: Any,
) -> None:
    stack = await stack_factory(rate_limit_fail_open=True)
    tenant = await signup(stack.client)
    second = (await password_login(stack.client, slug=tenant.slug, email=tenant.owner_email)).json()
    stack.redis.stop()

    assert (await me(stack.client, tenant.access_token)).status_code == 200
    health = await stack.client.get("/health")
    assert health.status_code == 503 and health.json()["redis"] == "down"
    revoked = await stack.client.post(
        "/api/v1/auth/revoke", data={"token": second["refresh_token"]}
    )
    assert revoked.status_code == 200
    assert (await me(stack.client, second["access_token"])).status_code == 401

    # Redis comes back empty: the revocation must still hold once limiting resumes.
    stack.redis.start_redis()
    await asyncio.sleep(2.5)
    assert (await me(stack.client, second["access_token"])).status_code == 401
    response = await me(stack.client, tenant.access_token)
    assert response.status_code == 200 and "RateLimit" in response.headers


async def test_fail_closed_answers_503(stack_factory: Any) -> None:
    stack = await stack_factory(rate_limit_fail_open=False)
    tenant = await signup(stack.client)
    stack.redis.stop()
    response = await me(stack.client, tenant.access_token)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "rate_limiter_unavailable"


async def test_revoked_sid_stays_revoked_after_flushall(stack_factory: Any) -> None:
    stack = await stack_factory()
    tenant = await signup(stack.client)
    await stack.client.post("/api/v1/auth/revoke", data={"token": tenant.refresh_token})
    assert (await me(stack.client, tenant.access_token)).status_code == 401
    redis = await stack.raw_redis()
    await redis.flushall()
    await redis.aclose()
    for _ in range(3):
        assert (await me(stack.client, tenant.access_token)).status_code == 401


async def test_password_guesses_are_limited_per_username(stack_factory: Any) -> None:
    # Per (account, address): 6 a minute, a burst of half that.
    stack = await stack_factory(login_rate_limit_per_minute=6)
    tenant = await signup(stack.client)  # one successful login already counted
    statuses = [
        (
            await password_login(
                stack.client, slug=tenant.slug, email=tenant.owner_email, password="wrong" * 3
            )
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [400, 400, 429]
    other_user = await password_login(stack.client, slug=tenant.slug, email="else@example.com")
    assert other_user.status_code == 400


async def test_token_and_signup_endpoints_are_limited_per_client_ip(stack_factory: Any) -> None:
    # 20 a minute, a burst of a tenth of that.
    stack = await stack_factory(ip_rate_limit_per_minute=20)
    form = {"grant_type": "refresh_token", "refresh_token": "x"}
    statuses = [
        (await stack.client.post("/api/v1/auth/token", data=form)).status_code for _ in range(3)
    ]
    assert statuses == [400, 400, 429]
    signup_response = await stack.client.post("/api/v1/tenants", json={})
    assert signup_response.status_code == 429
    assert int(signup_response.headers["Retry-After"]) >= 1


async def test_forwarded_for_is_believed_only_from_trusted_proxies(stack_factory: Any) -> None:
    stack = await stack_factory(ip_rate_limit_per_minute=1, trusted_proxies="127.0.0.1")
    form = {"grant_type": "refresh_token", "refresh_token": "x"}

    async def from_ip(ip: str) -> int:
        response = await stack.client.post(
            "/api/v1/auth/token", data=form, headers={"X-Forwarded-For": ip}
        )
        return response.status_code

    assert await from_ip("203.0.113.1") == 400
    assert await from_ip("203.0.113.2") == 400  # another client behind the same proxy
    assert await from_ip("203.0.113.1") == 429


async def test_limiter_disabled_still_enforces_revocation(stack_factory: Any) -> None:
    stack = await stack_factory(
        rate_limit_enabled=False, rate_limit_per_minute=1, rate_limit_burst=1
    )
    tenant = await signup(stack.client)
    responses = [await me(stack.client, tenant.access_token) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "RateLimit" not in responses[0].headers
    await stack.client.post("/api/v1/auth/revoke", data={"token": tenant.refresh_token})
    assert (await me(stack.client, tenant.access_token)).status_code == 401


async def test_set_limit_command_overrides_the_tenant(
    stack_factory: Any, settings: Settings
) -> None:
    from tests.support.cli import run_cli

    stack = await stack_factory(rate_limit_per_minute=600, rate_limit_burst=50)
    tenant = await signup(stack.client)
    code, output = await run_cli(
        settings, "tenants", "set-limit", tenant.slug, "--per-minute", "6", "--burst", "1"
    )
    assert code == 0, output
    stack.app.state.services.tenant_limits.forget(tenant.id)
    first = await me(stack.client, tenant.access_token)
    assert policies(first) == {"token": {"q": 6, "w": 60}, "token-burst": {"q": 1, "w": 10}}
    assert (await me(stack.client, tenant.access_token)).status_code == 429


async def test_each_limiter_names_its_own_policy(stack_factory: Any) -> None:
    """The per-address guard of the token endpoint says "ip", not "token"."""
    stack = await stack_factory(ip_rate_limit_per_minute=20)
    form = {"grant_type": "refresh_token", "refresh_token": "x"}
    responses = [await stack.client.post("/api/v1/auth/token", data=form) for _ in range(3)]
    limited = responses[-1]
    assert limited.status_code == 429
    assert policies(limited) == {"ip": {"q": 20, "w": 60}, "ip-burst": {"q": 2, "w": 6}}
    assert ratelimit(limited)[1]["t"] == int(limited.headers["Retry-After"])


async def _sign_in_from(
    stack: Any, tenant: Any, address: str, password: str = "wrong" * 3
) -> httpx.Response:
    return await stack.client.post(
        "/api/v1/auth/token",
        data={
            "grant_type": "password",
            "username": tenant.owner_email,
            "password": password,
            "tenant": tenant.slug,
        },
        headers={"X-Forwarded-For": address},
    )


async def test_an_attacker_elsewhere_cannot_lock_the_user_out(stack_factory: Any) -> None:
    """Guesses from one address use up that address's allowance only: the user, signing in
    from their own address, still gets in. Guesses spread over many addresses hit the
    account's ceiling."""
    stack = await stack_factory(
        login_rate_limit_per_minute=4,
        login_account_rate_limit_per_minute=24,
        trusted_proxies="127.0.0.1",
    )
    tenant = await signup(stack.client)
    attacker = [(await _sign_in_from(stack, tenant, "203.0.113.9")).status_code for _ in range(6)]
    assert attacker[:2] == [400, 400] and attacker[-1] == 429
    user = await _sign_in_from(stack, tenant, "198.51.100.7", password=PASSWORD)
    assert user.status_code == 200, user.text
    spread = [
        (await _sign_in_from(stack, tenant, f"192.0.2.{n}")).status_code for n in range(1, 12)
    ]
    assert spread[0] == 400 and spread[-1] == 429
    assert (await _sign_in_from(stack, tenant, "198.51.100.7", PASSWORD)).status_code == 429


async def test_wrong_current_passwords_count_as_guesses_and_are_audited(
    stack_factory: Any,
) -> None:
    """A stolen access token can't be used to guess the password on /me/password: the
    guesses share the account's sign-in guard, and each is in the tenant's audit log."""
    stack = await stack_factory(login_rate_limit_per_minute=6)
    tenant = await signup(stack.client)  # its sign-in counted once
    statuses = []
    for _ in range(4):
        response = await stack.client.post(
            "/api/v1/me/password",
            json={"current_password": "wrong" * 3, "new_password": "n" * 12},
            headers=tenant.headers,
        )
        statuses.append(response.status_code)
    assert statuses[:2] == [400, 400] and statuses[-1] == 429
    right = await stack.client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "n" * 12},
        headers=tenant.headers,
    )
    assert right.status_code == 429  # still limited: guessing then knowing gains nothing
    audit = await stack.client.get(
        "/api/v1/audit",
        params={"action": "auth.password_change_failed"},
        headers=tenant.headers,
    )
    assert len(audit.json()["items"]) == 2


def _fail_revocation_writes(stack: Stack, count: int) -> list[int]:
    """Make the next `count` revocation writes to Redis fail, as a timeout would: the real
    client, with its pipeline made to raise. Returns a counter of the writes that failed."""
    limiter = stack.app.state.services.limiter
    redis = limiter._redis
    real_pipeline = redis.pipeline
    failed = [0]

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        if failed[0] < count:
            failed[0] += 1
            raise RedisTimeoutError("injected: the revocation write timed out")
        return real_pipeline(*args, **kwargs)

    redis.pipeline = pipeline
    return failed


async def test_a_failed_revocation_write_never_leaves_a_stale_ok(stack_factory: Any) -> None:
    """The family is cached "ok"; the revocation's Redis write fails. The write made again
    after the revocation commits puts "revoked" in place at once: the very next request is
    refused, without waiting for a re-seed."""
    stack = await stack_factory()
    tenant = await signup(stack.client)
    assert (await me(stack.client, tenant.access_token)).status_code == 200  # cached "ok"
    failed = _fail_revocation_writes(stack, 1)
    revoked = await stack.client.post("/api/v1/auth/revoke", data={"token": tenant.refresh_token})
    assert revoked.status_code == 200 and failed == [1]
    await asyncio.sleep(0.05)
    for _ in range(3):
        assert (await me(stack.client, tenant.access_token)).status_code == 401


async def test_a_revocation_whose_writes_all_fail_is_reseeded_from_postgres(
    stack_factory: Any,
) -> None:
    """Both writes fail: the re-seed stays pending until PostgreSQL has been read after the
    revocation committed, then "revoked" replaces the cached "ok"."""
    stack = await stack_factory()
    tenant = await signup(stack.client)
    assert (await me(stack.client, tenant.access_token)).status_code == 200
    failed = _fail_revocation_writes(stack, 2)
    await stack.client.post("/api/v1/auth/revoke", data={"token": tenant.refresh_token})
    await asyncio.sleep(0.05)
    assert failed == [2]
    assert stack.app.state.services.limiter.needs_reseed is True
    deadline = asyncio.get_running_loop().time() + 5
    status = 200
    while status != 401 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        status = (await me(stack.client, tenant.access_token)).status_code
    assert status == 401
    assert (await me(stack.client, tenant.access_token)).status_code == 401
