"""Tenant administration: users and API clients. Thin: rules live in the services."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from stockyard.auth import client_service, user_service
from stockyard.auth.guard import client_ip
from stockyard.auth.limiter import LimiterDep
from stockyard.auth.models import ApiClient
from stockyard.auth.pipeline import (
    ADMINISTERS_CLIENTS,
    ADMINISTERS_USERS,
    ClientsAdmin,
    TenantSession,
    UsersAdmin,
    require,
)
from stockyard.auth.schemas import (
    ClientCreate,
    ClientCreated,
    ClientPage,
    ClientRead,
    PasswordChange,
    UserCreate,
    UserPage,
    UserRead,
    UserUpdate,
)
from stockyard.auth.scopes import Role
from stockyard.core.dependencies import SessionmakerDep, SettingsDep
from stockyard.core.pagination import Paging, id_cursor, instant_cursor
from stockyard.core.preconditions import IfMatch, etag, expected_version
from stockyard.core.principal import AccessClaims
from stockyard.core.responses import AUTHENTICATED, error_responses

router = APIRouter(prefix="/api/v1")

AnyUser = Annotated[AccessClaims, Depends(require())]
ERRORS = error_responses(*AUTHENTICATED, 404)


@router.get(
    "/users",
    response_model=UserPage,
    tags=["users"],
    responses=ERRORS,
    dependencies=[ADMINISTERS_USERS],
)
async def list_users(
    session: TenantSession,
    paging: Paging,
    role: Annotated[Role | None, Query()] = None,
    is_active: Annotated[bool | None, Query()] = None,
) -> UserPage:
    users = await user_service.list_users(
        session,
        role=role,
        is_active=is_active,
        after=id_cursor(paging.cursor),
        limit=paging.fetch,
    )
    page, next_cursor = paging.cut(users, lambda u: (str(u.id),))
    return UserPage(items=[UserRead.model_validate(u) for u in page], next_cursor=next_cursor)


@router.post(
    "/users",
    status_code=201,
    response_model=UserRead,
    tags=["users"],
    responses=error_responses(*AUTHENTICATED, 404, 409),
)
async def create_user(
    body: UserCreate, session: TenantSession, principal: UsersAdmin, response: Response
) -> UserRead:
    user = await user_service.create_user(session, principal, body=body)
    response.headers["ETag"] = etag(user.version)
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return UserRead.model_validate(user)


@router.get(
    "/users/{user_id}",
    response_model=UserRead,
    tags=["users"],
    responses=ERRORS,
    dependencies=[ADMINISTERS_USERS],
)
async def get_user(user_id: uuid.UUID, session: TenantSession, response: Response) -> UserRead:
    user = await user_service.get_user(session, user_id=user_id)
    response.headers["ETag"] = etag(user.version)
    return UserRead.model_validate(user)


@router.patch(
    "/users/{user_id}",
    response_model=UserRead,
    tags=["users"],
    responses=error_responses(*AUTHENTICATED, 404, 409, 412, 428),
)
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    session: TenantSession,
    principal: UsersAdmin,
    limiter: LimiterDep,
    response: Response,
    if_match: IfMatch,
) -> UserRead:
    user = await user_service.update_user(
        session,
        limiter,
        principal,
        user_id=user_id,
        version=expected_version(if_match),
        body=body,
    )
    response.headers["ETag"] = etag(user.version)
    return UserRead.model_validate(user)


@router.delete(
    "/users/{user_id}",
    status_code=204,
    tags=["users"],
    responses=error_responses(*AUTHENTICATED, 404, 409),
)
async def deactivate_user(
    user_id: uuid.UUID, session: TenantSession, principal: UsersAdmin, limiter: LimiterDep
) -> None:
    await user_service.deactivate_user(session, limiter, principal, user_id=user_id)


@router.post(
    "/me/password",
    status_code=204,
    tags=["users"],
    responses=error_responses(*AUTHENTICATED, 400, 404),
)
async def change_password(
    body: PasswordChange,
    principal: AnyUser,
    request: Request,
    settings: SettingsDep,
    sessionmaker: SessionmakerDep,
    limiter: LimiterDep,
) -> None:
    await user_service.change_own_password(
        sessionmaker,
        settings,
        limiter,
        principal,
        current_password=body.current_password,
        new_password=body.new_password,
        address=client_ip(request, settings.trusted_proxies),
    )


def _client_read(client: ApiClient) -> ClientRead:
    return ClientRead(
        client_id=client.id,
        name=client.name,
        scopes=list(client.scopes),
        created_at=client.created_at,
    )


@router.post(
    "/clients", status_code=201, response_model=ClientCreated, tags=["clients"], responses=ERRORS
)
async def create_client(
    body: ClientCreate, session: TenantSession, principal: ClientsAdmin, response: Response
) -> ClientCreated:
    client, secret = await client_service.create_client(
        session, principal, name=body.name, scopes=list(body.scopes)
    )
    response.headers["Cache-Control"] = "no-store"
    return ClientCreated(**_client_read(client).model_dump(), client_secret=secret)


@router.get(
    "/clients",
    response_model=ClientPage,
    tags=["clients"],
    responses=ERRORS,
    dependencies=[ADMINISTERS_CLIENTS],
)
async def list_clients(
    session: TenantSession,
    paging: Paging,
) -> ClientPage:
    clients = await client_service.list_clients(
        session,
        after=instant_cursor(paging.cursor),
        limit=paging.fetch,
    )
    page, next_cursor = paging.cut(clients, lambda c: (c.created_at.isoformat(), str(c.id)))
    return ClientPage(items=[_client_read(c) for c in page], next_cursor=next_cursor)


@router.delete("/clients/{client_id}", status_code=204, tags=["clients"], responses=ERRORS)
async def delete_client(
    client_id: uuid.UUID, session: TenantSession, principal: ClientsAdmin, limiter: LimiterDep
) -> None:
    await client_service.delete_client(session, limiter, principal, client_id=client_id)
