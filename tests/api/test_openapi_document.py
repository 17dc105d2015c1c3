"""The OpenAPI document states what the server enforces and sends, so generated clients and
fuzzers (tests/fuzz) can trust it."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.support.helpers import Tenant
from tests.support.inventory import Inventory


async def _document(client: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await client.get("/openapi.json")).json())


async def test_operations_and_schemas_have_short_stable_names(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    ids = [
        operation["operationId"]
        for operations in document["paths"].values()
        for operation in operations.values()
    ]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", name) for name in ids), ids
    assert {"issueToken", "revokeToken", "listMovements", "updateProduct"} <= set(ids)
    schemas = document["components"]["schemas"]
    assert not [name for name in schemas if "Api" in name or name.endswith(("Post", "Get"))]
    assert not [name for name in schemas if name.startswith("Body_")]
    assert {"IssueTokenForm", "RevokeTokenForm"} <= set(schemas)
    # Our 422s use the error envelope; FastAPI's own shape is not offered to clients.
    assert "HTTPValidationError" not in schemas
    # Enumerations are named schemas, so generated clients get one enum type per concept.
    for model, field, enum in [
        ("MovementRead", "kind", "MovementKind"),
        ("MovementCreate", "kind", "RecordedKind"),
        ("ReservationRead", "status", "ReservationStatus"),
        ("UserRead", "role", "Role"),
        ("OAuthErrorResponse", "error", "OAuthErrorCode"),
    ]:
        assert schemas[model]["properties"][field] == {"$ref": f"#/components/schemas/{enum}"}
    assert set(schemas["MovementKind"]["enum"]) >= {"receipt", "issue", "transfer_in"}


async def test_if_match_is_required_where_the_server_requires_it(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    document = await _document(client)
    for path in ("/api/v1/users/{user_id}", "/api/v1/products/{product_id}"):
        [if_match] = [
            p for p in document["paths"][path]["patch"]["parameters"] if p["name"] == "If-Match"
        ]
        assert if_match["required"] is True
    product = await Inventory(client, tenant).product()
    missing = await client.patch(
        f"/api/v1/products/{product['id']}", json={"name": "x"}, headers=tenant.headers
    )
    assert missing.status_code == 428
    assert missing.json()["error"]["code"] == "precondition_required"


async def test_the_sign_in_flows_are_a_security_scheme(client: httpx.AsyncClient) -> None:
    schemes = (await _document(client))["components"]["securitySchemes"]
    flows = next(s["flows"] for s in schemes.values() if s["type"] == "oauth2")
    assert flows["password"]["tokenUrl"] == "/api/v1/auth/token"
    assert flows["clientCredentials"]["tokenUrl"] == "/api/v1/auth/token"
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())


async def test_declared_response_headers_are_sent(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    document = await _document(client)
    created = document["paths"]["/api/v1/products"]["post"]["responses"]["201"]["headers"]
    assert {"ETag", "Location", "Idempotent-Replayed", "X-Request-ID", "RateLimit"} <= set(created)
    inv = Inventory(client, tenant)
    body = {"sku": "HDR-1", "name": "n"}
    first = await inv.post("/products", body, **{"Idempotency-Key": "hdr-1"})
    again = await inv.post("/products", body, **{"Idempotency-Key": "hdr-1"})
    for response in (first, again):
        assert response.status_code == 201
        assert response.headers["ETag"] == '"1"'
        assert response.headers["Location"] == f"/api/v1/products/{first.json()['id']}"
    assert again.headers["Idempotent-Replayed"] == "true"
    fetched = await client.get(first.headers["Location"], headers=tenant.headers)
    assert fetched.status_code == 200 and fetched.headers["ETag"] == '"1"'


async def test_405_lists_every_method_the_path_takes(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/v1/clients")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_the_token_form_says_which_grant_needs_which_field(
    client: httpx.AsyncClient,
) -> None:
    document = await _document(client)
    operation = document["paths"]["/api/v1/auth/token"]["post"]
    assert "client_credentials" in operation["description"]
    reference = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    form = document["components"]["schemas"][reference["$ref"].rsplit("/", 1)[-1]]
    properties = form["properties"]
    assert "password grant" in properties["username"]["description"]
    assert "refresh_token grant" in properties["refresh_token"]["description"]
    assert "client_credentials" in properties["client_secret"]["description"]


async def test_a_body_that_is_not_utf8_answers_the_documented_400(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    document = await _document(client)
    for operations in document["paths"].values():
        for operation in operations.values():
            if "requestBody" in operation:
                assert {"400", "413"} <= set(operation["responses"]), operation["operationId"]
    response = await client.post(
        "/api/v1/products",
        content=b'{"sku": "\xff\xfe", "name": "x"}',
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "malformed_body" and error["request_id"]
    assert "UTF-8" in error["message"]
