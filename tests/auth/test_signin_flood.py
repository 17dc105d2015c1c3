"""A flood of wrong-password sign-ins for one tenant, over real HTTP, while another tenant
reads: the reads neither fail nor slow down, and every sign-in gets a clear answer."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator

import httpx
import pytest

from stockyard.core.settings import Settings
from tests.support.helpers import signup
from tests.support.live import LiveServer


@pytest.fixture(scope="module")
def live(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server


async def test_a_sign_in_flood_does_not_starve_other_tenants(live: LiveServer) -> None:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=live.url, timeout=60, limits=limits) as client:
        victim, bystander = await signup(client), await signup(client)
        flood_over = asyncio.Event()
        latencies: list[float] = []
        statuses: list[int] = []

        async def read_stock() -> None:
            while not flood_over.is_set():
                started = time.monotonic()
                response = await client.get("/api/v1/stock", headers=bystander.headers)
                latencies.append(time.monotonic() - started)
                statuses.append(response.status_code)

        async def wrong_guess() -> httpx.Response:
            return await client.post(
                "/api/v1/auth/token",
                data={
                    "grant_type": "password",
                    "username": victim.owner_email,
                    "password": "not the password at all",
                    "tenant": victim.slug,
                },
            )

        readers = [asyncio.create_task(read_stock()) for _ in range(4)]
        await asyncio.sleep(0.2)
        guesses = await asyncio.gather(*(wrong_guess() for _ in range(50)))
        flood_over.set()
        await asyncio.gather(*readers)

    assert set(statuses) == {200}, statuses
    assert len(latencies) >= 20
    p99 = statistics.quantiles(latencies, n=100)[98]
    # Starved, the reads waited behind the hashing (p99 6.1 s, some 503s, when #11 measured
    # it); healthy, they take 0.5-1.1 s at p99 on a loaded 2-core CI box, test client, server,
    # PostgreSQL and Redis sharing it. 2 s keeps the two regimes apart without timing noise.
    assert p99 < 2.0, f"p99 of the bystander's reads {p99:.3f}s"
    for guess in guesses:
        assert guess.status_code in (400, 503), guess.text
        if guess.status_code == 503:
            # Past the hashing queue: turned away at once, told when to come back (an outage
            # answer, so the project's envelope).
            assert guess.json()["error"]["code"] == "busy"
            assert guess.headers["Retry-After"] == "1"
        else:
            assert guess.json()["error"] == "invalid_grant"  # RFC 6749 shape
