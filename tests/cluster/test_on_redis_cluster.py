"""On a Redis Cluster (conftest.py): the limiter's and the revocation cache's own tests, run
again unchanged, including a master stopped (the cluster down: fail open, or 503 when
failing closed) and brought back empty (revocations re-seeded from PostgreSQL); the token
reuse and revocation tests; the console's sessions (a record and its refresh lock share one
hash tag); and what only a cluster can show, that the keys of one call
share a slot while different token families spread over the masters."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio.cluster import RedisCluster

from tests.auth.test_rate_limit import (
    test_a_revocation_whose_writes_all_fail_is_reseeded_from_postgres,
    test_burst_allowed_then_429_with_headers,
    test_fail_closed_answers_503,
    test_fail_open_lets_requests_through_and_checks_revocation_in_postgres,
    test_revoked_sid_stays_revoked_after_flushall,
    test_tenant_override_applies,
    test_two_sign_ins_have_independent_buckets_and_refresh_shares_one,
)
from tests.auth.test_tokens import (
    test_concurrent_refreshes_of_one_token_exactly_one_succeeds,
    test_reuse_of_a_used_refresh_token_revokes_the_whole_family,
    test_revoking_an_access_token_ends_it_and_only_it,
)
from tests.cluster.conftest import Cluster
from tests.console.test_sessions import (
    test_a_session_ends_at_its_absolute_timeout_and_idles_out,
    test_an_expiring_access_token_is_refreshed_once_under_concurrent_clicks,
    test_revoking_the_token_family_ends_the_console_session,
    test_sign_out_ends_the_session_and_its_token_family,
)
from tests.support.helpers import bearer, password_login, signup

pytestmark = pytest.mark.cluster

__all__ = [
    "test_a_revocation_whose_writes_all_fail_is_reseeded_from_postgres",
    "test_a_session_ends_at_its_absolute_timeout_and_idles_out",
    "test_an_expiring_access_token_is_refreshed_once_under_concurrent_clicks",
    "test_burst_allowed_then_429_with_headers",
    "test_concurrent_refreshes_of_one_token_exactly_one_succeeds",
    "test_fail_closed_answers_503",
    "test_fail_open_lets_requests_through_and_checks_revocation_in_postgres",
    "test_reuse_of_a_used_refresh_token_revokes_the_whole_family",
    "test_revoked_sid_stays_revoked_after_flushall",
    "test_revoking_an_access_token_ends_it_and_only_it",
    "test_revoking_the_token_family_ends_the_console_session",
    "test_sign_out_ends_the_session_and_its_token_family",
    "test_tenant_override_applies",
    "test_two_sign_ins_have_independent_buckets_and_refresh_shares_one",
]


async def test_the_app_speaks_to_the_cluster_and_families_spread_over_the_masters(
    client: httpx.AsyncClient, app: FastAPI, redis_cluster: Cluster
) -> None:
    assert isinstance(app.state.redis, RedisCluster)
    assert (await client.get("/health")).json()["redis"] == "ok"
    tenant = await signup(client)
    for _ in range(12):
        signed_in = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
        token = signed_in.json()["access_token"]
        response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 200 and "RateLimit" in response.headers
    raw = RedisCluster.from_url(redis_cluster.redis_url)
    try:
        holding: set[Any] = set()
        async for key in raw.scan_iter(match=f"{app.state.settings.redis_key_prefix}rl:*"):
            holding.add(raw.get_node_from_key(key).port)
    finally:
        await raw.aclose()
    # Thirteen families (signup's and twelve sign-ins) over three masters: more than one used.
    assert len(holding) >= 2


async def test_one_master_down_takes_the_cluster_down_and_its_return_brings_limits_back(
    stack_factory: Any, redis_cluster: Cluster
) -> None:
    stack = await stack_factory(
        rate_limit_fail_open=True, rate_limit_per_minute=3, rate_limit_burst=3
    )
    tenant = await signup(stack.client)
    redis_cluster.stop([redis_cluster.ports[1]])
    # Once the others notice (node timeout, 2 s), every slot answers CLUSTERDOWN: requests go
    # through unlimited (fail open) and /health says Redis is down.
    for _ in range(100):
        if (await stack.client.get("/health")).json()["redis"] == "down":
            break
        await asyncio.sleep(0.1)
    assert (await stack.client.get("/health")).json()["redis"] == "down"
    statuses = [
        (await stack.client.get("/api/v1/me", headers=tenant.headers)).status_code for _ in range(6)
    ]
    assert statuses == [200] * 6
    redis_cluster.start_redis()
    for _ in range(100):
        if (await stack.client.get("/health")).json()["redis"] == "ok":
            break
        await asyncio.sleep(0.1)
    statuses = [
        (await stack.client.get("/api/v1/me", headers=tenant.headers)).status_code for _ in range(6)
    ]
    assert 429 in statuses and statuses[0] == 200
