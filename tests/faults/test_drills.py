"""Fault drills under load: Redis and PostgreSQL stopped and started, SIGTERM mid-request."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from stockyard.core.database import app_url, owner_url, to_libpq_dsn
from stockyard.core.embedded import EmbeddedServices
from stockyard.core.settings import Settings
from stockyard.migrations.runner import migrate
from tests.conftest import make_settings, running_app
from tests.support.helpers import signup
from tests.support.inventory import Inventory
from tests.support.serve import free_port
from tests.support.services import TestServices

pytestmark = pytest.mark.faults


async def _hammer(
    client: httpx.AsyncClient, request: Any, stop: asyncio.Event, workers: int = 6
) -> list[tuple[float, float, httpx.Response]]:
    """Send requests from `workers` loops until `stop`; record (start, duration, response)."""
    results: list[tuple[float, float, httpx.Response]] = []

    async def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = await request(client)
            results.append((started, time.monotonic() - started, response))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(loop() for _ in range(workers)))
    return results


@pytest.mark.usefixtures("settings")
async def test_redis_outage_under_load_fails_open_and_limiting_resumes(
    services: TestServices, tmp_path: Path
) -> None:
    redis = EmbeddedServices(tmp_path)
    url = redis.start_redis()
    try:
        async with running_app(make_settings(services, redis_url=url)) as (_, client):
            tenant = await signup(client)
            stop = asyncio.Event()

            async def me(c: httpx.AsyncClient) -> httpx.Response:
                return await c.get("/api/v1/me", headers=tenant.headers)

            load = asyncio.create_task(_hammer(client, me, stop))
            await asyncio.sleep(1)
            await asyncio.to_thread(redis.stop)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(redis.start_redis)
            await asyncio.sleep(2.5)
            stop.set()
            results = await load
            assert results
            assert all(response.status_code == 200 for _, _, response in results)
            assert all(duration < 5 for _, duration, _ in results)
            last = await me(client)
            assert "RateLimit" in last.headers  # the limiter is back in the path
    finally:
        redis.stop()


async def test_postgres_outage_under_load_is_503_then_recovers_losing_nothing(
    services: TestServices, tmp_path: Path
) -> None:
    database = EmbeddedServices(tmp_path)
    url = database.start_postgres()
    try:
        settings = make_settings(services, database_url=url, db_timeout_seconds=2.0)
        await asyncio.to_thread(migrate, settings)
        async with running_app(settings) as (_, client):
            tenant = await signup(client)
            inv = Inventory(client, tenant)
            product = await inv.product()
            sku = product["sku"]
            loc = (await inv.location())["code"]
            stop = asyncio.Event()

            async def receive(c: httpx.AsyncClient) -> httpx.Response:
                return await c.post(
                    "/api/v1/movements",
                    json={"sku": sku, "location": loc, "kind": "receipt", "quantity": 1},
                    headers=tenant.headers,
                )

            # The hot reads race the writes through the outage, each on its own pool.
            reads = [
                f"/api/v1/products/{product['id']}",
                f"/api/v1/stock?sku={sku}",
                f"/api/v1/movements?sku={sku}&limit=5",
            ]

            async def read(c: httpx.AsyncClient) -> httpx.Response:
                return await c.get(random.choice(reads), headers=tenant.headers)

            load = asyncio.gather(_hammer(client, receive, stop), _hammer(client, read, stop))
            await asyncio.sleep(1)
            await asyncio.to_thread(database.stop)
            await asyncio.sleep(2)
            restarted_at = time.monotonic()
            await asyncio.to_thread(database.start_postgres)
            await asyncio.sleep(4)
            stop.set()
            results, read_results = await load

        read_statuses = {response.status_code for _, _, response in read_results}
        assert read_statuses <= {200, 503}, read_statuses
        assert 503 in read_statuses and 200 in read_statuses
        statuses = {response.status_code for _, _, response in results}
        assert statuses <= {201, 503}, statuses
        assert 503 in statuses, "the outage was not observed"
        for _, duration, response in results:
            assert duration < 10, "a request hung past the database timeout"
            if response.status_code == 503:
                assert response.json()["error"]["code"] == "database_unavailable"
        recovered = [
            start for start, _, r in results if r.status_code == 201 and start >= restarted_at
        ]
        assert recovered and min(recovered) - restarted_at < 10

        acknowledged = {r.json()["movement"]["id"] for _, _, r in results if r.status_code == 201}
        connection = await asyncpg.connect(to_libpq_dsn(owner_url(settings)))
        try:
            stored = {
                str(row["id"])
                for row in await connection.fetch(
                    "SELECT id FROM movement WHERE tenant_id = $1", tenant.id
                )
            }
        finally:
            await connection.close()
        assert acknowledged <= stored
    finally:
        database.stop()


async def test_sigterm_lets_in_flight_requests_finish(settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url and settings.redis_url and settings.secret_key
    port = free_port()
    env = {
        **os.environ,
        "STOCKYARD_DATABASE_URL": settings.database_url,
        "STOCKYARD_REDIS_URL": settings.redis_url,
        "STOCKYARD_SECRET_KEY": settings.secret_key.get_secret_value(),
        "STOCKYARD_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "STOCKYARD_MIGRATE_ON_START": "false",
        "STOCKYARD_LOG_LEVEL": "WARNING",
    }
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stockyard.cli", "serve", "--port", str(port), env=env, cwd=tmp_path
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            for _ in range(200):
                try:
                    if (await client.get("/livez")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            tenant = await signup(client)
            inv = Inventory(client, tenant)
            sku = (await inv.product())["sku"]
            loc = (await inv.location())["code"]
            items = [{"sku": sku, "location": loc, "kind": "receipt", "quantity": 1}] * 10_000
            in_flight = [
                asyncio.create_task(
                    client.post(
                        "/api/v1/movements/bulk", json={"items": items}, headers=tenant.headers
                    )
                )
                for _ in range(3)
            ]
            await asyncio.sleep(0.3)
            server.send_signal(signal.SIGTERM)
            responses = await asyncio.gather(*in_flight)
        assert [r.status_code for r in responses] == [201, 201, 201]
        # A graceful stop on SIGTERM is a clean exit.
        assert await asyncio.wait_for(server.wait(), 30) == 0
    finally:
        if server.returncode is None:
            server.kill()


async def test_no_connection_slot_left_is_503_then_recovers(
    services: TestServices, tmp_path: Path
) -> None:
    """PostgreSQL refusing new connections (SQLSTATE 53300, every slot taken) is the server's
    condition, retryable: 503 database_unavailable, never a 500; the API recovers once slots
    free up. The cluster is the drill's own, so the limit touches no other test."""
    database = EmbeddedServices(tmp_path)
    url = database.start_postgres()
    try:
        settings = make_settings(services, database_url=url, db_timeout_seconds=2.0)
        await asyncio.to_thread(migrate, settings)
        app_role = app_url(settings).username
        owner = await asyncpg.connect(to_libpq_dsn(owner_url(settings)))
        try:
            async with running_app(settings) as (_, client):
                tenant = await signup(client)
                assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 200
                await owner.execute(f'ALTER ROLE "{app_role}" CONNECTION LIMIT 0')
                await owner.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    app_role,
                )
                refused = [await client.get("/api/v1/me", headers=tenant.headers) for _ in range(5)]
                statuses = [response.status_code for response in refused]
                assert set(statuses) == {503}, statuses
                for response in refused:
                    assert response.json()["error"]["code"] == "database_unavailable"
                    assert response.headers["Retry-After"] == "1"
                await owner.execute(f'ALTER ROLE "{app_role}" CONNECTION LIMIT -1')
                assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 200
        finally:
            await owner.close()
    finally:
        database.stop()
