"""The OpenAPI document as clients generated from it need it: short stable operation ids, the
sign-in flows as a security scheme, and the headers responses really carry."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, APIRouter
from starlette.routing import BaseRoute

from stockyard.auth.pipeline import AUTHENTICATING_DEPENDENCIES, SECURITY_SCHEMES

# Response headers every operation, or every authenticated one, may send.
_REQUEST_ID = {
    "description": "The request's id: quote it to support; also in every error body.",
    "schema": {"type": "string"},
}
_RATE_LIMIT = {
    "RateLimit-Policy": {
        "description": "The limits this token is under (RFC 8941 List), e.g. "
        '`"token";q=600;w=60, "token-burst";q=60;w=6`.',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of the burst, e.g. `"token-burst";r=59;t=1`.',
        "schema": {"type": "string"},
    },
}
_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
_ETAG = {"description": 'The version, for If-Match: e.g. `"3"`.', "schema": {"type": "string"}}
_LOCATION = {"description": "Where the created resource lives.", "schema": {"type": "string"}}
_REPLAYED = {
    "description": "`true` when this is the stored answer to an earlier request with the same "
    "Idempotency-Key.",
    "schema": {"type": "string", "enum": ["true"]},
}


def operation_id(route: APIRoute) -> str:
    """`list_movements` -> `listMovements`: short, stable, and unique (route function names
    are)."""
    head, *rest = route.name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def install_document(app: FastAPI) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _declare_security(schema, app.routes)
            _name_form_bodies(schema)
            _declare_body_errors(schema)
            _declare_headers(schema)
            _drop_unused_framework_schemas(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _declare_security(schema: dict[str, Any], routes: list[BaseRoute]) -> None:
    """The pipeline reads the bearer token itself (no security dependency to solve on every
    request), so the document is told here which operations take one: those whose
    dependencies reach an authenticating dependency of the pipeline."""
    authenticated = {operation_id(route) for route in _api_routes(routes) if _authenticates(route)}
    if not authenticated:
        return
    schema.setdefault("components", {})["securitySchemes"] = {
        name: scheme.model_dump(mode="json", by_alias=True, exclude_none=True)
        for name, scheme in SECURITY_SCHEMES.items()
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("operationId") in authenticated:
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]


def _api_routes(routes: list[BaseRoute]) -> list[APIRoute]:
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        router = getattr(route, "original_router", None)  # an included router
        if isinstance(router, APIRouter):
            found.extend(_api_routes(router.routes))
    return found


def _authenticates(route: APIRoute) -> bool:
    def reaches(dependant: Dependant) -> bool:
        return any(
            sub.call in AUTHENTICATING_DEPENDENCIES or reaches(sub)
            for sub in dependant.dependencies
        )

    return reaches(route.dependant)


def _name_form_bodies(schema: dict[str, Any]) -> None:
    """FastAPI names a form body `Body_<operationId>`; generated clients turn that into
    `BodyIssueToken`. Name it after the operation instead: `IssueTokenForm`."""
    components = schema.get("components", {}).get("schemas", {})
    renamed = {
        old: old.removeprefix("Body_")[0].upper() + old.removeprefix("Body_")[1:] + "Form"
        for old in list(components)
        if old.startswith("Body_")
    }
    for old, new in renamed.items():
        components[new] = components.pop(old)
        components[new]["title"] = new
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                reference = content.get("schema", {}).get("$ref", "")
                old = reference.rsplit("/", 1)[-1]
                if old in renamed:
                    content["schema"]["$ref"] = f"#/components/schemas/{renamed[old]}"


def _declare_body_errors(schema: dict[str, Any]) -> None:
    """Every operation that reads a body may refuse it before any route code runs: 400 when
    the bytes cannot be read (not UTF-8), 413 above the size limit. The OAuth endpoints answer
    bad form fields with their own 400 (RFC 6749 section 5.2), never with a 422."""
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" not in operation:
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "400",
                {
                    "description": "The body could not be read (not UTF-8)",
                    "content": {"application/json": {"schema": envelope}},
                },
            )
            responses.setdefault(
                "413",
                {
                    "description": "The body is larger than this operation accepts",
                    "content": {"application/json": {"schema": envelope}},
                },
            )
            bad_request = responses["400"].get("content", {}).get("application/json", {})
            if bad_request.get("schema", {}).get("$ref", "").endswith("/OAuthErrorResponse"):
                responses.pop("422", None)
            operation["responses"] = dict(sorted(responses.items()))


def _drop_unused_framework_schemas(schema: dict[str, Any]) -> None:
    """FastAPI's own 422 shape is listed even when no operation answers with it (ours use
    the error envelope); generated clients would carry dead types."""
    components = schema.get("components", {}).get("schemas", {})
    if "HTTPValidationError" not in json.dumps(schema.get("paths", {})):
        components.pop("HTTPValidationError", None)
        if "ValidationError" not in json.dumps(components):
            components.pop("ValidationError", None)


def _declare_headers(schema: dict[str, Any]) -> None:
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            authenticated = bool(operation.get("security"))
            parameters = {p["name"].lower() for p in operation.get("parameters", [])}
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers["X-Request-ID"] = _REQUEST_ID
                if authenticated:
                    headers.update(_RATE_LIMIT)
                if status in {"429", "503"}:
                    headers["Retry-After"] = _RETRY_AFTER
                if not status.startswith("2"):
                    continue
                if "version" in _response_properties(schema, response):
                    headers["ETag"] = _ETAG
                properties = _response_properties(schema, response)
                if status == "201" and "id" in properties and _has_item_route(schema, path):
                    headers["Location"] = _LOCATION
                if "idempotency-key" in parameters and method == "post":
                    headers["Idempotent-Replayed"] = _REPLAYED


def _response_properties(schema: dict[str, Any], response: dict[str, Any]) -> set[str]:
    content = response.get("content", {}).get("application/json", {}).get("schema", {})
    reference = content.get("$ref", "")
    if not reference:
        return set()
    component = schema["components"]["schemas"][reference.rsplit("/", 1)[-1]]
    return set(component.get("properties", {}))


def _has_item_route(schema: dict[str, Any], path: str) -> bool:
    return any(
        other.startswith(path + "/{") and other.count("/") == path.count("/") + 1
        for other in schema.get("paths", {})
    )
