"""Every route x every kind of caller -> the status it must answer, from one table
(tests/support/permissions.py).

A route that exists in the app but has no row there fails the test, so no route ships without
its permissions being stated.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.support.crew import Crew
from tests.support.permissions import MATRIX, PRINCIPALS


def _app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every operation the app serves, as its OpenAPI document states them."""
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def test_every_route_has_a_row(app: FastAPI) -> None:
    missing = _app_routes(app) - set(MATRIX)
    stale = set(MATRIX) - _app_routes(app)
    assert not missing, f"routes without a permission row: {sorted(missing)}"
    assert not stale, f"rows for routes that no longer exist: {sorted(stale)}"


async def test_permission_matrix(client: httpx.AsyncClient, crew: Crew) -> None:
    failures = []
    for (method, template), row in MATRIX.items():
        for principal in PRINCIPALS:
            prepared = await row.prepare(client, crew)
            headers = {**prepared.get("headers", {}), **crew.headers(principal)}
            path = template.format(**{k: v for k, v in prepared.items() if k != "headers"})
            response = await client.request(
                method,
                path,
                headers=headers,
                params=row.params,
                json=row.json(prepared) if row.json else None,
                data=row.form,
            )
            expected = row.expect[principal]
            if response.status_code != expected:
                failures.append(
                    f"{method} {template} as {principal}: {response.status_code} != {expected}"
                    f" {response.text[:120]}"
                )
            if response.status_code >= 400:
                body = response.json()
                # The OAuth endpoints answer RFC 6749's shape (`error` a string), all else
                # the envelope; both carry the request id.
                request_id = (
                    body["error"]["request_id"]
                    if isinstance(body["error"], dict)
                    else (body["request_id"])
                )
                assert request_id == response.headers["X-Request-ID"]
    assert not failures, "\n".join(failures)
