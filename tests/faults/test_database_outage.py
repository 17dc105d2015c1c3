"""Fault drill: the database goes away and comes back under a running API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from stockyard.core.embedded import EmbeddedServices
from stockyard.migrations.runner import migrate
from tests.conftest import make_settings, running_app
from tests.support.services import TestServices

pytestmark = pytest.mark.faults


async def _wait_for(client: httpx.AsyncClient, status: int, within: float) -> float:
    started = time.monotonic()
    while True:
        response = await client.get("/health")
        if response.status_code == status:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"/health still {response.status_code}: {response.text}")
        await asyncio.sleep(0.2)


async def test_health_reports_db_down_fast_and_the_api_recovers_without_restart(
    services: TestServices, tmp_path: Path
) -> None:
    database = EmbeddedServices(tmp_path)
    url = database.start_postgres()
    try:
        settings = make_settings(services, database_url=url)
        await asyncio.to_thread(migrate, settings)
        async with running_app(settings) as (_, client):
            assert (await client.get("/health")).status_code == 200

            await asyncio.to_thread(database.stop)
            started = time.monotonic()
            response = await client.get("/health")
            assert time.monotonic() - started < 3.0
            assert response.status_code == 503
            assert response.json()["db"] == "down" and response.json()["redis"] == "ok"

            assert await asyncio.to_thread(database.start_postgres) == url
            await _wait_for(client, 200, within=10.0)
    finally:
        database.stop()
