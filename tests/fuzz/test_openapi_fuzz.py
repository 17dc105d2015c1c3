"""Schemathesis against the live OpenAPI document, with a real token, on a real server.

Bounded for CI (a few examples per operation); set STOCKYARD_FUZZ_EXAMPLES higher locally.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stockyard.api.app import create_app
from stockyard.core.settings import Settings
from tests.helpers import PASSWORD

EXAMPLES = int(os.environ.get("STOCKYARD_FUZZ_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Server:
    """The API served by uvicorn on a loopback port, in a thread of its own."""

    def __init__(self, settings: Settings) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_config=None
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fuzz server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[tuple[Server, str]]:
    with Server(settings) as server:
        slug = "fuzz-owner"
        email = f"owner@{slug}.example.com"
        httpx.post(
            f"{server.url}/api/v1/tenants",
            json={"name": "Fuzz", "slug": slug, "owner_email": email, "owner_password": PASSWORD},
        )
        token = httpx.post(
            f"{server.url}/api/v1/auth/token",
            data={
                "grant_type": "password",
                "username": email,
                "password": PASSWORD,
                "tenant": slug,
            },
        ).json()["access_token"]
        yield server, token


@pytest.fixture(scope="module")
def api_schema(live_server: tuple[Server, str]) -> Any:
    server, _ = live_server
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_api_conforms_to_its_openapi_document(
    live_server: tuple[Server, str], api_schema: Any
) -> None:
    """Every operation: no 5xx, and every status and body as the document states it."""
    server, token = live_server
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)

        try:
            exercise()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {str(exc)[:800]}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
