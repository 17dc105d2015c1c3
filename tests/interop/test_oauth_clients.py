"""The standard OAuth 2.0 client libraries integrators use, against a live server: Authlib's
OAuth2Client and requests-oauthlib, with nothing hand-written between them and the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from oauthlib.oauth2 import InvalidGrantError, InvalidScopeError, LegacyApplicationClient
from requests_oauthlib import OAuth2Session

from stockyard.core.settings import Settings
from tests.support.crew import add_client, add_user
from tests.support.helpers import PASSWORD, Tenant, signup
from tests.support.live import LiveServer

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def live(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server


@pytest.fixture(scope="module")
def metadata(live: LiveServer) -> dict[str, Any]:
    """What a client library would discover (RFC 8414)."""
    response = httpx.get(f"{live.url}/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    return dict(response.json())


def _tenant(live: LiveServer) -> Tenant:
    async def make() -> Tenant:
        async with httpx.AsyncClient(base_url=live.url) as client:
            return await signup(client)

    return asyncio.run(make())


@pytest.mark.usefixtures("live")
def test_discovery_names_the_endpoints_and_the_tokens_issuer(
    metadata: dict[str, Any], settings: Settings
) -> None:
    assert metadata["issuer"] == settings.issuer
    assert metadata["token_endpoint"] == f"{settings.public_url}/api/v1/auth/token"
    assert metadata["revocation_endpoint"] == f"{settings.public_url}/api/v1/auth/revoke"
    assert metadata["jwks_uri"] == f"{settings.public_url}/.well-known/jwks.json"
    assert set(metadata["grant_types_supported"]) == {
        "password",
        "refresh_token",
        "client_credentials",
    }
    assert metadata["response_types_supported"] == []
    assert "inventory:read" in metadata["scopes_supported"]


def _token_url(live: LiveServer) -> str:
    return f"{live.url}/api/v1/auth/token"


def test_authlib_password_grant_refresh_and_revocation(
    live: LiveServer, settings: Settings
) -> None:
    tenant = _tenant(live)
    refreshed: list[dict[str, Any]] = []
    with OAuth2Client(
        client_id="stockyard",
        token_endpoint_auth_method="none",
        token_endpoint=_token_url(live),
        update_token=lambda token, refresh_token=None, access_token=None: refreshed.append(token),
    ) as client:
        token = client.fetch_token(
            _token_url(live),
            grant_type="password",
            username=tenant.owner_email,
            password=PASSWORD,
            tenant=tenant.slug,
        )
        header = jwt.get_unverified_header(token["access_token"])
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        assert header["typ"] == "at+jwt"
        assert claims["iss"] == settings.issuer and claims["client_id"] == "stockyard"
        assert client.get(f"{live.url}/api/v1/me").status_code == 200

        # The access token has expired (as the client sees it): Authlib refreshes on its own.
        client.token["expires_at"] = int(time.time()) - 10
        assert client.get(f"{live.url}/api/v1/me").status_code == 200
        assert len(refreshed) == 1
        new_refresh = refreshed[0]["refresh_token"]
        assert new_refresh != token["refresh_token"]

        # Revoke the access token alone: refused at once, the session lives on.
        access = client.token["access_token"]
        revoked_access = client.revoke_token(
            f"{live.url}/api/v1/auth/revoke", token=access, token_type_hint="access_token"
        )
        assert revoked_access.status_code == 200
        assert client.get(f"{live.url}/api/v1/me").status_code == 401
        # Then the refresh token: the whole session ends.
        revoked = client.revoke_token(
            f"{live.url}/api/v1/auth/revoke", token=new_refresh, token_type_hint="refresh_token"
        )
        assert revoked.status_code == 200
        with pytest.raises(OAuthError) as failed:
            client.refresh_token(_token_url(live), refresh_token=new_refresh)
        assert failed.value.error == "invalid_grant"


def test_authlib_surfaces_invalid_grant_and_invalid_scope(live: LiveServer) -> None:
    tenant = _tenant(live)
    with OAuth2Client(client_id="stockyard", token_endpoint_auth_method="none") as client:
        with pytest.raises(OAuthError) as wrong:
            client.fetch_token(
                _token_url(live),
                grant_type="password",
                username=tenant.owner_email,
                password="not the password",
                tenant=tenant.slug,
            )
        assert wrong.value.error == "invalid_grant"

    async def viewer() -> str:
        async with httpx.AsyncClient(base_url=live.url) as http:
            user_id, _ = await add_user(http, tenant, "viewer")
            users = (await http.get(f"/api/v1/users/{user_id}", headers=tenant.headers)).json()
            return str(users["email"])

    email = asyncio.run(viewer())
    with OAuth2Client(client_id="stockyard", token_endpoint_auth_method="none") as client:
        with pytest.raises(OAuthError) as beyond:
            client.fetch_token(
                _token_url(live),
                grant_type="password",
                username=email,
                password=PASSWORD,
                tenant=tenant.slug,
                scope="inventory:read inventory:write",
            )
        assert beyond.value.error == "invalid_scope"
        narrowed = client.fetch_token(
            _token_url(live),
            grant_type="password",
            username=email,
            password=PASSWORD,
            tenant=tenant.slug,
            scope="inventory:read",
        )
        assert narrowed["scope"] == "inventory:read"


def test_authlib_client_credentials_with_basic_auth_and_down_scoping(live: LiveServer) -> None:
    tenant = _tenant(live)

    async def api_client() -> tuple[str, str]:
        async with httpx.AsyncClient(base_url=live.url) as http:
            client_id, secret, _ = await add_client(
                http, tenant, ["inventory:read", "inventory:write"]
            )
            return client_id, secret

    client_id, secret = asyncio.run(api_client())
    with OAuth2Client(
        client_id=client_id,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_basic",
    ) as client:
        token = client.fetch_token(
            _token_url(live), grant_type="client_credentials", scope="inventory:read"
        )
        assert token["scope"] == "inventory:read"
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        assert claims["client_id"] == client_id
        assert client.get(f"{live.url}/api/v1/stock").status_code == 200
        write = client.post(f"{live.url}/api/v1/products", json={"sku": "S-1", "name": "n"})
        assert write.status_code == 403
        assert write.headers["WWW-Authenticate"] == (
            'Bearer error="insufficient_scope", scope="inventory:write"'
        )
    with (
        OAuth2Client(
            client_id=client_id,
            client_secret="wrong" * 8,
            token_endpoint_auth_method="client_secret_basic",
        ) as client,
        pytest.raises(OAuthError) as refused,
    ):
        client.fetch_token(_token_url(live), grant_type="client_credentials")
    assert refused.value.error == "invalid_client"


def test_requests_oauthlib_raises_its_own_error_classes(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # oauthlib insists on https; this server is on the loopback, in the test's own process.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    tenant = _tenant(live)
    session = OAuth2Session(client=LegacyApplicationClient(client_id="stockyard"))
    token = session.fetch_token(
        token_url=_token_url(live),
        username=tenant.owner_email,
        password=PASSWORD,
        tenant=tenant.slug,
        include_client_id=True,
    )
    assert session.get(f"{live.url}/api/v1/me").status_code == 200
    assert set(token["scope"]) >= {"inventory:read", "users:admin"}
    with pytest.raises(InvalidGrantError):
        OAuth2Session(client=LegacyApplicationClient(client_id="stockyard")).fetch_token(
            token_url=_token_url(live),
            username=tenant.owner_email,
            password="not the password",
            tenant=tenant.slug,
            include_client_id=True,
        )
    with pytest.raises(InvalidScopeError):
        OAuth2Session(client=LegacyApplicationClient(client_id="stockyard")).fetch_token(
            token_url=_token_url(live),
            username=tenant.owner_email,
            password=PASSWORD,
            tenant=tenant.slug,
            include_client_id=True,
            scope="no:such",
        )
