"""Tenant administration pages: users, API clients, webhooks, the audit log and the tenant's
own settings. Each calls the service the API's route calls, under the same scope."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from stockyard.audit import repository as audit_repository
from stockyard.auth import client_service, user_service
from stockyard.auth.schemas import ClientCreate, UserCreate, UserUpdate
from stockyard.auth.scopes import ClientScope, Role
from stockyard.console.forms import (
    Problem,
    flash_and_redirect,
    form_of,
    local_instant,
    refused,
    taken_flash,
    text,
)
from stockyard.console.pages import PAGE_ROWS, PREFIX, console_page, page_url, redirect, render
from stockyard.console.pipeline import (
    AuditReader,
    ClientsAdmin,
    ConsoleContext,
    UsersAdmin,
    WebhooksAdmin,
)
from stockyard.core.errors import AppError, NotFound
from stockyard.core.pagination import PageRequest, Paging, id_cursor, instant_cursor
from stockyard.tenants import repository as tenant_repository
from stockyard.webhooks import service as webhooks_service
from stockyard.webhooks.schemas import WebhookCreate, WebhookRead
from stockyard.webhooks.service import Keys

router = APIRouter(prefix=PREFIX, include_in_schema=False)


# Users ------------------------------------------------------------------------------------


async def _users_page(
    request: Request,
    caller: ConsoleContext,
    paging: PageRequest,
    *,
    status: int = 200,
    error: Problem | None = None,
    notice: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    paging = console_page(paging)
    users = await user_service.list_users(
        caller.session,
        role=None,
        is_active=None,
        after=id_cursor(paging.cursor),
        limit=paging.fetch,
    )
    page, next_cursor = paging.cut(users, lambda u: (str(u.id),))
    return render(
        request,
        "users.html",
        status=status,
        me=caller.console,
        title="Users",
        users=page,
        roles=[role.value for role in Role],
        next_url=page_url(f"{PREFIX}/users", next_cursor),
        error=error,
        notice=notice,
        form=form or {"email": "", "name": "", "role": Role.MEMBER.value},
    )


@router.get("/users")
async def users_page(
    request: Request, caller: ConsoleContext, principal: UsersAdmin, paging: Paging
) -> Response:
    done = await taken_flash(request, caller)
    return await _users_page(request, caller, paging, notice=done.get("notice"))


@router.post("/users")
async def add_user(request: Request, caller: ConsoleContext, principal: UsersAdmin) -> Response:
    form = await form_of(request)
    entered = {"email": text(form, "email"), "name": text(form, "name"), "role": text(form, "role")}
    try:
        body = UserCreate.model_validate(
            {**entered, "name": entered["name"] or None, "password": form.get("password")}
        )
        user = await user_service.create_user(caller.session, principal, body=body)
    except (ValidationError, AppError) as failed:
        problem = await refused(request, caller.session, principal, failed)
        return await _users_page(
            request,
            caller,
            PageRequest(PAGE_ROWS, None),
            status=problem.status,
            error=problem,
            form=entered,
        )
    return await flash_and_redirect(request, caller, "/users", notice=f"Added {user.email}.")


@router.post("/users/{user_id}/role")
async def change_role(
    request: Request, user_id: uuid.UUID, caller: ConsoleContext, principal: UsersAdmin
) -> Response:
    form = await form_of(request)
    try:
        version = int(text(form, "version") or "0")
        body = UserUpdate.model_validate({"role": text(form, "role")})
        user = await user_service.update_user(
            caller.session,
            request.app.state.limiter,
            principal,
            user_id=user_id,
            version=version,
            body=body,
        )
    except (ValidationError, ValueError, AppError) as failed:
        problem = await refused(request, caller.session, principal, failed)
        if problem.status == 404:
            raise
        return await _users_page(
            request, caller, PageRequest(PAGE_ROWS, None), status=problem.status, error=problem
        )
    return await flash_and_redirect(
        request, caller, "/users", notice=f"{user.email} is now {user.role}."
    )


@router.post("/users/{user_id}/deactivate")
async def deactivate_user(
    request: Request, user_id: uuid.UUID, caller: ConsoleContext, principal: UsersAdmin
) -> Response:
    try:
        await user_service.deactivate_user(
            caller.session, request.app.state.limiter, principal, user_id=user_id
        )
    except AppError as failed:
        problem = await refused(request, caller.session, principal, failed)
        if problem.status == 404:
            raise
        return await _users_page(
            request, caller, PageRequest(PAGE_ROWS, None), status=problem.status, error=problem
        )
    user = await user_service.get_user(caller.session, user_id=user_id)
    return await flash_and_redirect(
        request, caller, "/users", notice=f"{user.email} is deactivated; their sessions have ended."
    )


# API clients ------------------------------------------------------------------------------


async def _clients_page(
    request: Request,
    caller: ConsoleContext,
    paging: PageRequest,
    *,
    status: int = 200,
    error: Problem | None = None,
    created: dict[str, Any] | None = None,
) -> Response:
    paging = console_page(paging)
    clients = await client_service.list_clients(
        caller.session, after=instant_cursor(paging.cursor), limit=paging.fetch
    )
    page, next_cursor = paging.cut(clients, lambda c: (c.created_at.isoformat(), str(c.id)))
    return render(
        request,
        "clients.html",
        status=status,
        me=caller.console,
        title="API clients",
        clients=page,
        client_scopes=[scope.value for scope in ClientScope],
        next_url=page_url(f"{PREFIX}/clients", next_cursor),
        error=error,
        created=created,
    )


@router.get("/clients")
async def clients_page(
    request: Request, caller: ConsoleContext, principal: ClientsAdmin, paging: Paging
) -> Response:
    created = await taken_flash(request, caller)
    return await _clients_page(request, caller, paging, created=created or None)


@router.post("/clients")
async def add_client(request: Request, caller: ConsoleContext, principal: ClientsAdmin) -> Response:
    form = await form_of(request)
    try:
        body = ClientCreate.model_validate(
            {"name": text(form, "name"), "scopes": [s for s in form.getlist("scopes") if s]}
        )
        client, secret = await client_service.create_client(
            caller.session, principal, name=body.name, scopes=list(body.scopes)
        )
    except (ValidationError, AppError) as failed:
        problem = await refused(request, caller.session, principal, failed)
        return await _clients_page(
            request, caller, PageRequest(PAGE_ROWS, None), status=problem.status, error=problem
        )
    # The secret goes to the next page once, sealed, for a minute: a reload shows it no more.
    return await flash_and_redirect(
        request,
        caller,
        "/clients",
        name=client.name,
        client_id=str(client.id),
        client_secret=secret,
    )


@router.post("/clients/{client_id}/delete")
async def delete_client(
    request: Request, client_id: uuid.UUID, caller: ConsoleContext, principal: ClientsAdmin
) -> Response:
    await client_service.delete_client(
        caller.session, request.app.state.limiter, principal, client_id=client_id
    )
    return redirect(PREFIX + "/clients")


# Webhooks ---------------------------------------------------------------------------------


def _keys(request: Request) -> Keys:
    settings = request.app.state.settings
    return Keys(settings.secret_key.get_secret_value())


async def _webhooks_page(
    request: Request,
    caller: ConsoleContext,
    paging: PageRequest,
    *,
    status: int = 200,
    error: Problem | None = None,
    created: Any = None,
    form: dict[str, str] | None = None,
) -> Response:
    paging = console_page(paging)
    hooks = await webhooks_service.list_endpoints(
        caller.session, after_id=id_cursor(paging.cursor), limit=paging.fetch
    )
    page, next_cursor = paging.cut(hooks, lambda h: (str(h.id),))
    return render(
        request,
        "webhooks.html",
        status=status,
        me=caller.console,
        title="Webhooks",
        webhooks=[WebhookRead.model_validate(hook) for hook in page],
        next_url=page_url(f"{PREFIX}/webhooks", next_cursor),
        error=error,
        created=created,
        form=form or {"url": "", "events": "stock.*", "description": ""},
    )


@router.get("/webhooks")
async def webhooks_page(
    request: Request, caller: ConsoleContext, principal: WebhooksAdmin, paging: Paging
) -> Response:
    created = await taken_flash(request, caller)
    return await _webhooks_page(request, caller, paging, created=created or None)


@router.post("/webhooks")
async def add_webhook(
    request: Request, caller: ConsoleContext, principal: WebhooksAdmin
) -> Response:
    form = await form_of(request)
    entered = {
        "url": text(form, "url", 2048),
        "events": text(form, "events", 2000),
        "description": text(form, "description"),
    }
    settings = request.app.state.settings
    try:
        body = WebhookCreate.model_validate(
            {
                "url": entered["url"],
                "events": entered["events"].split(),
                "description": entered["description"] or None,
            }
        )
        created = await webhooks_service.create_endpoint(
            caller.session,
            principal,
            body=body,
            keys=_keys(request),
            allow_private=settings.webhook_allow_private_targets,
        )
    except (ValidationError, AppError) as failed:
        problem = await refused(request, caller.session, principal, failed)
        return await _webhooks_page(
            request,
            caller,
            PageRequest(PAGE_ROWS, None),
            status=problem.status,
            error=problem,
            form=entered,
        )
    return await flash_and_redirect(request, caller, "/webhooks", secret=created.secret)


@router.post("/webhooks/{webhook_id}/delete")
async def delete_webhook(
    request: Request, webhook_id: uuid.UUID, caller: ConsoleContext, principal: WebhooksAdmin
) -> Response:
    await webhooks_service.delete_endpoint(caller.session, principal, endpoint_id=webhook_id)
    return redirect(PREFIX + "/webhooks")


# Audit log and tenant ---------------------------------------------------------------------


@router.get("/audit")
async def audit_page(
    request: Request,
    caller: ConsoleContext,
    principal: AuditReader,
    paging: Paging,
    actor_id: Annotated[str | None, Query(max_length=36)] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    request_id: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[str | None, Query(max_length=32)] = None,
    until: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    filters = {
        "actor_id": actor_id or "",
        "action": action or "",
        "request_id": request_id or "",
        "since": since or "",
        "until": until or "",
    }
    paging = console_page(paging)
    try:
        actor = uuid.UUID(actor_id) if actor_id else None
        since_at, until_at = local_instant(since), local_instant(until)
    except ValueError:
        problem = Problem(422, "Check the filters", "Use a user or client id and dates.", [])
        return render(
            request,
            "audit.html",
            status=422,
            me=caller.console,
            title="Audit log",
            events=[],
            filters=filters,
            next_url=None,
            error=problem,
        )
    events = await audit_repository.list_events(
        caller.session,
        request_id=request_id or None,
        actor_id=actor,
        action=action or None,
        since=since_at,
        until=until_at,
        before=instant_cursor(paging.cursor),
        limit=paging.fetch,
    )
    page, next_cursor = paging.cut(events, lambda e: (e.occurred_at.isoformat(), str(e.id)))
    return render(
        request,
        "audit.html",
        me=caller.console,
        title="Audit log",
        events=page,
        filters=filters,
        next_url=page_url(f"{PREFIX}/audit", next_cursor, **filters),
        error=None,
    )


@router.get("/tenant")
async def tenant_page(request: Request, caller: ConsoleContext, principal: UsersAdmin) -> Response:
    tenant = await tenant_repository.get_tenant(caller.session, principal.tenant_id)
    if tenant is None:
        raise NotFound("No such tenant.")
    per_minute, burst = await request.app.state.tenant_limits.get(principal.tenant_id)
    return render(
        request,
        "tenant.html",
        me=caller.console,
        title="Tenant",
        tenant=tenant,
        per_minute=per_minute,
        burst=burst,
        overridden=tenant.rate_limit_per_minute is not None,
    )
