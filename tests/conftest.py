from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from stockyard.api.app import create_app
from stockyard.core.database import app_url, owner_url, to_libpq_dsn
from stockyard.core.settings import Settings
from stockyard.migrations.runner import migrate
from tests.support.cli import run_cli
from tests.support.crew import Crew, make_crew
from tests.support.helpers import PASSWORD, Tenant, signup
from tests.support.inventory import Inventory
from tests.support.services import TestServices, test_services

UNLIMITED = 10_000_000


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServices]:
    with test_services(Path(tmp_path_factory.mktemp("services"))) as running:
        yield running


def make_settings(services: TestServices, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": services.database_url,
        "redis_url": services.redis_url,
        "redis_key_prefix": services.redis_prefix,
        "secret_key": "test-secret-key-" + "x" * 32,
        "rate_limit_per_minute": UNLIMITED,
        "rate_limit_burst": UNLIMITED,
        "ip_rate_limit_per_minute": UNLIMITED,
        "login_rate_limit_per_minute": UNLIMITED,
        "login_account_rate_limit_per_minute": UNLIMITED,
        "signing_key_cache_seconds": 0.2,
        "jwks_max_age_seconds": 1,
        # Webhook tests start dispatchers of their own (tests/webhooks); the shared app has
        # none, so no test's deliveries are sent by another test's settings.
        "webhook_dispatch": False,
        # Tests sweep when they mean to (maintenance.sweep); a sweep on the app's timer raced
        # the tests of lazy expiry, letting a hold go just before the request meant to.
        "sweep_interval_seconds": 24 * 3600,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def settings(services: TestServices) -> Settings:
    built = make_settings(services)
    migrate(built)
    return built


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


@pytest.fixture(scope="session")
async def app_and_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings) as pair:
        yield pair


@pytest.fixture
def app(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return app_and_client[0]


@pytest.fixture
def client(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]


@pytest.fixture
async def tenant(client: httpx.AsyncClient) -> Tenant:
    return await signup(client)


@pytest.fixture
def inv(client: httpx.AsyncClient, tenant: Tenant) -> Inventory:
    """Terse inventory calls as the test's tenant."""
    return Inventory(client, tenant)


@pytest.fixture
async def other_tenant(client: httpx.AsyncClient) -> Tenant:
    return await signup(client)


@pytest.fixture
async def app_db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection as stockyard_app: what the API sees, RLS included."""
    connection = await asyncpg.connect(to_libpq_dsn(app_url(settings)))
    yield connection
    await connection.close()


@pytest.fixture
async def owner_db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(to_libpq_dsn(owner_url(settings)))
    yield connection
    await connection.close()


class LogCapture(logging.Handler):
    """Collects rendered log lines exactly as the JSON handler would print them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        root_handler = logging.getLogger().handlers[0]
        self.setFormatter(root_handler.formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines(app: FastAPI) -> Iterator[list[str]]:
    handler = LogCapture()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.lines
    root.removeHandler(handler)


def random_slug() -> str:
    return f"t-{secrets.token_hex(6)}"


@pytest.fixture
async def crew(client: httpx.AsyncClient) -> Crew:
    return await make_crew(client)


@pytest.fixture
async def staff_token(client: httpx.AsyncClient, settings: Settings) -> str:
    email = f"support-{secrets.token_hex(4)}@stockyard.example.com"
    code, output = await run_cli(
        settings, "staff", "create", "--email", email, "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert code == 0, output
    response = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "support:read"
    assert response.json()["refresh_token"] is None
    return str(response.json()["access_token"])
