from __future__ import annotations

import base64

import httpx
import jwt

from tests.support.crew import Crew, add_client, add_user, client_token
from tests.support.helpers import PASSWORD, Tenant, bearer, password_login, refresh


async def _get(client: httpx.AsyncClient, tenant: Tenant, user_id: str) -> httpx.Response:
    return await client.get(f"/api/v1/users/{user_id}", headers=tenant.headers)


async def _patch(
    client: httpx.AsyncClient, token: str, user_id: str, body: dict[str, object], etag: str
) -> httpx.Response:
    return await client.patch(
        f"/api/v1/users/{user_id}", json=body, headers={**bearer(token), "If-Match": etag}
    )


async def _owner_id(client: httpx.AsyncClient, tenant: Tenant) -> str:
    me = await client.get("/api/v1/me", headers=tenant.headers)
    return str(me.json()["user"]["id"])


async def test_member_cannot_raise_their_own_role(client: httpx.AsyncClient, crew: Crew) -> None:
    member_id = crew.user_ids["member"]
    etag = (await _get(client, crew.tenant, member_id)).headers["ETag"]
    response = await _patch(client, crew.tokens["member"], member_id, {"role": "admin"}, etag)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert (await _get(client, crew.tenant, member_id)).json()["role"] == "member"


async def test_admin_cannot_create_or_demote_an_owner(
    client: httpx.AsyncClient, crew: Crew
) -> None:
    create = await client.post(
        "/api/v1/users",
        json={"email": "new-owner@example.com", "role": "owner", "password": PASSWORD},
        headers=crew.headers("admin"),
    )
    assert create.status_code == 403
    owner_id = await _owner_id(client, crew.tenant)
    etag = (await _get(client, crew.tenant, owner_id)).headers["ETag"]
    demote = await _patch(client, crew.tokens["admin"], owner_id, {"role": "member"}, etag)
    assert demote.status_code == 403
    promote = await _patch(
        client,
        crew.tokens["admin"],
        crew.user_ids["member"],
        {"role": "owner"},
        (await _get(client, crew.tenant, crew.user_ids["member"])).headers["ETag"],
    )
    assert promote.status_code == 403


async def test_last_owner_cannot_be_demoted_or_deactivated(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    owner_id = await _owner_id(client, tenant)
    etag = (await _get(client, tenant, owner_id)).headers["ETag"]
    demote = await _patch(client, tenant.access_token, owner_id, {"role": "admin"}, etag)
    assert demote.status_code == 409
    assert demote.json()["error"]["code"] == "last_owner"
    deactivate = await client.delete(f"/api/v1/users/{owner_id}", headers=tenant.headers)
    assert deactivate.status_code == 409
    # With a second owner, the first may step down.
    second_id, _ = await add_user(client, tenant, "owner")
    assert (
        await _patch(client, tenant.access_token, owner_id, {"role": "admin"}, etag)
    ).status_code == 200
    del second_id


async def test_if_match_is_required_and_checked(client: httpx.AsyncClient, crew: Crew) -> None:
    member_id = crew.user_ids["member"]
    missing = await client.patch(
        f"/api/v1/users/{member_id}", json={"name": "x"}, headers=crew.tenant.headers
    )
    assert missing.status_code == 428
    stale = await _patch(client, crew.tokens["owner"], member_id, {"name": "x"}, '"999"')
    assert stale.status_code == 412
    current = (await _get(client, crew.tenant, member_id)).headers["ETag"]
    ok = await _patch(client, crew.tokens["owner"], member_id, {"name": "Renamed"}, current)
    assert ok.status_code == 200
    assert ok.json()["name"] == "Renamed"
    assert ok.headers["ETag"] != current


async def test_deactivated_users_unexpired_token_fails_on_the_next_request(
    client: httpx.AsyncClient, crew: Crew
) -> None:
    member_token = crew.tokens["member"]
    assert (await client.get("/api/v1/me", headers=bearer(member_token))).status_code == 200
    deleted = await client.delete(
        f"/api/v1/users/{crew.user_ids['member']}", headers=crew.tenant.headers
    )
    assert deleted.status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer(member_token))).status_code == 401
    user = (await _get(client, crew.tenant, crew.user_ids["member"])).json()
    assert user["is_active"] is False


async def test_role_change_ends_sessions(client: httpx.AsyncClient, crew: Crew) -> None:
    viewer_id = crew.user_ids["viewer"]
    etag = (await _get(client, crew.tenant, viewer_id)).headers["ETag"]
    changed = await _patch(client, crew.tokens["owner"], viewer_id, {"role": "member"}, etag)
    assert changed.status_code == 200
    assert (await client.get("/api/v1/me", headers=crew.headers("viewer"))).status_code == 401


async def test_deleted_clients_tokens_stop_working(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    client_id, secret, token = await add_client(client, tenant, ["inventory:read"])
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
    listed = (await client.get("/api/v1/clients", headers=tenant.headers)).json()["items"]
    assert [c["client_id"] for c in listed] == [client_id]
    assert "client_secret" not in listed[0]
    assert (
        await client.delete(f"/api/v1/clients/{client_id}", headers=tenant.headers)
    ).status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 401
    again = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_client"


async def test_client_credentials_token_shape(client: httpx.AsyncClient, tenant: Tenant) -> None:
    client_id, secret, _ = await add_client(client, tenant, ["inventory:read", "inventory:write"])
    response = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["refresh_token"] is None
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == client_id and claims["sid"] == client_id
    assert claims["scope"] == "inventory:read inventory:write"
    assert claims["tid"] == str(tenant.id)
    second = jwt.decode(
        await client_token(client, client_id, secret), options={"verify_signature": False}
    )
    assert second["sid"] == claims["sid"]  # one rate-limit bucket per client


async def test_client_credentials_reject_wrong_secret_and_admin_scopes(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    client_id, _, _ = await add_client(client, tenant, ["inventory:read"])
    basic = base64.b64encode(f"{client_id}:wrong".encode()).decode()
    wrong = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"] == "Basic"
    admin_scope = await client.post(
        "/api/v1/clients", json={"name": "x", "scopes": ["users:admin"]}, headers=tenant.headers
    )
    assert admin_scope.status_code == 422


async def test_password_change_revokes_other_sessions_only(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    other_session = (
        await password_login(client, slug=tenant.slug, email=tenant.owner_email)
    ).json()
    wrong = await client.post(
        "/api/v1/me/password",
        json={"current_password": "not my password", "new_password": "a brand new passphrase"},
        headers=tenant.headers,
    )
    assert wrong.status_code == 400
    changed = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=tenant.headers,
    )
    assert changed.status_code == 204
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 200
    assert (
        await client.get("/api/v1/me", headers=bearer(other_session["access_token"]))
    ).status_code == 401
    assert (await refresh(client, other_session["refresh_token"])).status_code == 400
    assert (
        await password_login(client, slug=tenant.slug, email=tenant.owner_email)
    ).status_code == 400
    assert (
        await password_login(
            client, slug=tenant.slug, email=tenant.owner_email, password="a brand new passphrase"
        )
    ).status_code == 200


async def test_user_list_paginates_and_filters(client: httpx.AsyncClient, crew: Crew) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/api/v1/users", params=params, headers=crew.tenant.headers)
        ).json()
        seen += [user["id"] for user in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 4
    viewers = await client.get(
        "/api/v1/users", params={"role": "viewer"}, headers=crew.tenant.headers
    )
    assert [u["id"] for u in viewers.json()["items"]] == [crew.user_ids["viewer"]]
    bad = await client.get("/api/v1/users", params={"cursor": "!!"}, headers=crew.tenant.headers)
    assert bad.status_code == 422


async def test_duplicate_email_is_409(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/api/v1/users",
        json={"email": tenant.owner_email, "role": "viewer", "password": PASSWORD},
        headers=tenant.headers,
    )
    assert response.status_code == 409
