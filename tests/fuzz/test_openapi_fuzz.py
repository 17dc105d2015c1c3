"""Schemathesis against the live OpenAPI document, with a real token, on a real server.

Bounded for CI (a few examples per operation); set STOCKYARD_FUZZ_EXAMPLES higher locally.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stockyard.core.settings import Settings
from tests.helpers import PASSWORD
from tests.support.live import LiveServer

EXAMPLES = int(os.environ.get("STOCKYARD_FUZZ_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[tuple[LiveServer, str]]:
    with LiveServer(settings) as server:
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
def api_schema(live_server: tuple[LiveServer, str]) -> Any:
    server, _ = live_server
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_api_conforms_to_its_openapi_document(
    live_server: tuple[LiveServer, str], api_schema: Any
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
