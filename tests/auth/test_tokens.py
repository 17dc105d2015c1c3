"""The token attack suite, refresh rotation and reuse detection."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from stockyard.auth.keys import KeyPair
from stockyard.auth.tokens import LEEWAY_SECONDS, verify_access_token
from stockyard.core.settings import Settings
from tests.support.crew import add_client, client_token
from tests.support.helpers import PASSWORD, Tenant, bearer, password_login, refresh, signup


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _current_key(app: FastAPI) -> KeyPair:
    key: KeyPair = await app.state.services.keyring.signing_key()
    return key


def _claims_of(tenant: Tenant) -> dict[str, Any]:
    return jwt.decode(tenant.access_token, options={"verify_signature": False})


def _sign(key: KeyPair, claims: dict[str, Any], **header: Any) -> str:
    """Signed exactly as the API signs (our key, `typ: at+jwt`), so each test below is
    refused for the one thing it changes."""
    return jwt.encode(
        claims,
        key.private_key,
        algorithm="ES256",
        headers={"kid": key.kid, "typ": "at+jwt", **header},
    )


async def _assert_rejected(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401, response.text
    # RFC 6750 section 3.1: a presented token that is no good is `invalid_token`.
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.json()["error"]["request_id"] == response.headers["X-Request-ID"]


async def test_valid_token_is_accepted(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/api/v1/me", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["user"]["email"] == tenant.owner_email
    assert response.json()["user"]["role"] == "owner"


async def test_missing_token_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_alg_none_is_rejected(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    key = await _current_key(app)
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": key.kid}).encode())
    payload = _b64(json.dumps(_claims_of(tenant)).encode())
    await _assert_rejected(client, f"{header}.{payload}.")


async def test_hs256_signed_with_the_public_key_is_rejected(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    key = await _current_key(app)
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    payload = _b64(json.dumps(_claims_of(tenant)).encode())
    signature = _b64(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    await _assert_rejected(client, f"{header}.{payload}.{signature}")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"exp": -120, "iat": -800, "nbf": -800}, id="expired"),
        pytest.param({"nbf": 300, "iat": 300}, id="not-yet-valid"),
        pytest.param({"iss": "someone-else"}, id="wrong-iss"),
        pytest.param({"aud": "another-api"}, id="wrong-aud"),
    ],
)
async def test_claim_checks_reject(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, change: dict[str, Any]
) -> None:
    key = await _current_key(app)
    claims = _claims_of(tenant)
    now = int(time.time())
    for name, value in change.items():
        claims[name] = now + value if isinstance(value, int) else value
    await _assert_rejected(client, _sign(key, claims))


@pytest.mark.parametrize("claim", ["sid", "tid", "exp", "jti", "scope", "aud"])
async def test_missing_claim_is_rejected(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, claim: str
) -> None:
    key = await _current_key(app)
    claims = _claims_of(tenant)
    del claims[claim]
    await _assert_rejected(client, _sign(key, claims))


async def test_unknown_kid_is_rejected(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    key = await _current_key(app)
    token = jwt.encode(
        _claims_of(tenant), key.private_key, algorithm="ES256", headers={"kid": "no-such-kid"}
    )
    await _assert_rejected(client, token)


async def test_tampered_payload_is_rejected(client: httpx.AsyncClient, tenant: Tenant) -> None:
    header, original, signature = tenant.access_token.split(".")
    claims = _claims_of(tenant)
    assert claims["role"] == "owner"
    # A real escalation: a scope no role has, on a token otherwise as issued.
    claims["scope"] = claims["scope"] + " support:read"
    payload = _b64(json.dumps(claims).encode())
    assert payload != original
    await _assert_rejected(client, f"{header}.{payload}.{signature}")


async def test_token_with_forged_tenant_is_rejected(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    header, _, signature = tenant.access_token.split(".")
    claims = _claims_of(tenant)
    claims["tid"] = str(other_tenant.id)
    await _assert_rejected(client, f"{header}.{_b64(json.dumps(claims).encode())}.{signature}")


async def test_refresh_rotates_and_the_used_token_is_spent(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    first = await refresh(client, tenant.refresh_token)
    assert first.status_code == 200
    body = first.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 600
    assert body["refresh_token"] != tenant.refresh_token
    assert first.headers["Cache-Control"] == "no-store"
    new_claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert new_claims["sid"] == _claims_of(tenant)["sid"]
    second = await refresh(client, body["refresh_token"])
    assert second.status_code == 200


async def test_reuse_of_a_used_refresh_token_revokes_the_whole_family(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    rotated = (await refresh(client, tenant.refresh_token)).json()
    reused = await refresh(client, tenant.refresh_token)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    # The newest refresh token of the family and every access token it minted are dead too.
    assert (await refresh(client, rotated["refresh_token"])).status_code == 400
    await _assert_rejected(client, rotated["access_token"])
    await _assert_rejected(client, tenant.access_token)


async def test_revoked_family_access_token_is_rejected_even_when_redis_forgot(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await client.post("/api/v1/auth/revoke", data={"token": tenant.refresh_token})
    await _assert_rejected(client, tenant.access_token)
    # Lose the Redis cache of this family: PostgreSQL still says revoked.
    services = app.state.services
    sid = _claims_of(tenant)["sid"]
    await services.redis.delete(f"{services.settings.redis_key_prefix}rl:{{{sid}}}:auth")
    await _assert_rejected(client, tenant.access_token)


async def test_revoking_an_access_token_ends_it_and_only_it(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """RFC 7009 for access tokens: the revoked token is refused on its very next request (one
    Redis round trip, as ever), and still refused when Redis has forgotten everything about
    its session (PostgreSQL decides); its session lives on, and so do its other tokens."""
    sibling = (await refresh(client, tenant.refresh_token)).json()
    revoked = await client.post(
        "/api/v1/auth/revoke",
        data={"token": tenant.access_token, "token_type_hint": "access_token"},
    )
    assert revoked.status_code == 200
    await _assert_rejected(client, tenant.access_token)
    me = await client.get("/api/v1/me", headers=bearer(sibling["access_token"]))
    assert me.status_code == 200
    assert (await refresh(client, sibling["refresh_token"])).status_code == 200

    services = app.state.services
    prefix, sid = services.settings.redis_key_prefix, _claims_of(tenant)["sid"]
    forgotten = [key async for key in services.redis.scan_iter(f"{prefix}rl:{{{sid}}}*")]
    assert forgotten and await services.redis.delete(*forgotten)
    await _assert_rejected(client, tenant.access_token)

    # A client-credentials token too: revoking it leaves the client's other tokens working.
    owner = dataclasses.replace(tenant, access_token=sibling["access_token"])
    client_id, secret, one = await add_client(client, owner, ["inventory:read"])
    other = await client_token(client, client_id, secret)
    assert (await client.post("/api/v1/auth/revoke", data={"token": one})).status_code == 200
    await _assert_rejected(client, one)
    assert (await client.get("/api/v1/stock", headers=bearer(other))).status_code == 200


async def test_concurrent_refreshes_of_one_token_exactly_one_succeeds(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    responses = await asyncio.gather(*(refresh(client, tenant.refresh_token) for _ in range(5)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(400) == 4


async def test_reuse_detection_under_concurrent_refreshes_never_deadlocks(
    client: httpx.AsyncClient,
) -> None:
    """Many refreshes of one token at once: one rotates it, every other one is a reuse whose
    revocation runs in a transaction of its own while the rest still hold the token's row;
    none may end in a deadlock (503 concurrent_update). Ten rounds of eight."""
    for _ in range(10):
        tenant = await signup(client)
        responses = await asyncio.gather(*(refresh(client, tenant.refresh_token) for _ in range(8)))
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] + [400] * 7, statuses


async def test_revoke_endpoint_answers_200_for_any_token(client: httpx.AsyncClient) -> None:
    """RFC 7009 section 2.2: an unknown or invalid token is not an error; a missing one is."""
    unknown = f"{uuid.uuid4().hex}.not-a-real-token"
    for token in (unknown, "garbage"):
        response = await client.post("/api/v1/auth/revoke", data={"token": token})
        assert response.status_code == 200
    missing = await client.post("/api/v1/auth/revoke", data={"token_type_hint": "refresh_token"})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


async def test_a_token_that_is_not_an_access_token_is_rejected(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """RFC 9068: without `typ: at+jwt` a JWT signed by our key (an ID token, say) is no
    access token, whatever its claims."""
    key = await _current_key(app)
    await _assert_rejected(client, _sign(key, _claims_of(tenant), typ="JWT"))
    await _assert_rejected(client, _sign(key, _claims_of(tenant), typ=None))


async def test_wrong_password_and_unknown_user_look_the_same(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    wrong = await password_login(
        client, slug=tenant.slug, email=tenant.owner_email, password="x" * 12
    )
    unknown = await password_login(client, slug=tenant.slug, email="nobody@example.com")
    no_tenant = await password_login(client, slug="no-such-tenant", email=tenant.owner_email)
    for response in (wrong, unknown, no_tenant):
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        assert response.json()["error_description"] == wrong.json()["error_description"]
    assert (
        await password_login(
            client, slug=tenant.slug, email=tenant.owner_email.upper(), password=PASSWORD
        )
    ).status_code == 200


@pytest.mark.parametrize(
    ("form", "code", "status"),
    [
        ({}, "invalid_request", 400),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type", 400),
        ({"grant_type": "password", "username": "a@example.com"}, "invalid_request", 400),
        ({"grant_type": "refresh_token"}, "invalid_request", 400),
        ({"grant_type": "refresh_token", "refresh_token": "nonsense"}, "invalid_grant", 400),
        ({"grant_type": "client_credentials"}, "invalid_client", 401),
        (
            {"grant_type": "password", "username": "a", "password": "b", "scope": "x:y"},
            "invalid_scope",
            400,
        ),
        ({"grant_type": "password", "username": "a" * 5000}, "invalid_request", 400),
    ],
)
async def test_token_endpoint_errors_use_rfc6749_codes(
    client: httpx.AsyncClient, form: dict[str, str], code: str, status: int
) -> None:
    """RFC 6749 section 5.2: `error` is a string code, `error_description` human text."""
    response = await client.post("/api/v1/auth/token", data=form)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == code and isinstance(body["error_description"], str)
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["Cache-Control"] == "no-store"
    if code == "invalid_client":
        assert response.headers["WWW-Authenticate"] == "Basic"


async def test_a_repeated_parameter_is_invalid_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/token",
        content="grant_type=password&grant_type=refresh_token",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.usefixtures("settings")
async def test_grace_window_tolerates_only_the_immediately_previous_token(services: Any) -> None:
    from tests.conftest import make_settings, running_app
    from tests.support.helpers import signup

    async with running_app(make_settings(services, refresh_reuse_grace_seconds=30)) as (_, c):
        tenant = await signup(c)
        first = (await refresh(c, tenant.refresh_token)).json()
        # A concurrent client refreshed with the same token a moment later: tolerated, and
        # answered with the same pair.
        again = await refresh(c, tenant.refresh_token)
        assert again.status_code == 200
        assert again.json()["refresh_token"] == first["refresh_token"]
        # Once the pair it returned has itself been refreshed, a token two rotations old is
        # reuse again, grace window or not: the family is revoked.
        second = (await refresh(c, first["refresh_token"])).json()
        stale = await refresh(c, tenant.refresh_token)
        assert stale.status_code == 400
        assert (await refresh(c, second["refresh_token"])).status_code == 400


@pytest.mark.usefixtures("settings")
async def test_two_refreshes_within_grace_both_stay_usable(services: Any) -> None:
    """Two concurrent refreshes of one token both answer 200 with the same pair: whichever
    response the client keeps, its next refresh (after the window closed) works and the
    session lives on."""
    from tests.conftest import make_settings, running_app
    from tests.support.helpers import signup

    async with running_app(make_settings(services, refresh_reuse_grace_seconds=2)) as (_, c):
        for kept in (0, 1):
            tenant = await signup(c)
            racing = await asyncio.gather(
                refresh(c, tenant.refresh_token), refresh(c, tenant.refresh_token)
            )
            assert [r.status_code for r in racing] == [200, 200], [r.text for r in racing]
            pairs = [r.json() for r in racing]
            assert pairs[0]["refresh_token"] == pairs[1]["refresh_token"]
            assert pairs[0]["access_token"] == pairs[1]["access_token"]
            await asyncio.sleep(2.5)
            later = await refresh(c, pairs[kept]["refresh_token"])
            assert later.status_code == 200, later.text
            me = await c.get("/api/v1/me", headers=bearer(later.json()["access_token"]))
            assert me.status_code == 200


async def test_a_verified_token_is_remembered_only_until_it_expires(
    app: FastAPI, tenant: Tenant, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker skips ES256 for a token it has verified, but never past the token's `exp`
    (plus the leeway verification allows), and never for a token it has not seen."""
    keyring = app.state.keyring
    where = {"issuer": settings.issuer, "audience": settings.jwt_audience}
    claims = await verify_access_token(keyring, tenant.access_token, **where)
    remembered = keyring.verified.get(tenant.access_token, leeway=LEEWAY_SECONDS, **where)
    assert remembered == claims
    header, payload, signature = tenant.access_token.split(".")
    assert keyring.verified.get(f"{header}.{payload}.x{signature}", leeway=0, **where) is None
    monkeypatch.setattr("stockyard.auth.keys.time.time", lambda: claims.expires_at + LEEWAY_SECONDS)
    assert keyring.verified.get(tenant.access_token, leeway=LEEWAY_SECONDS, **where) is None
