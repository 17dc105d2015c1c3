"""Webhook endpoints, their signing secrets, delivery log, test sends and replays."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from stockyard.auth.pipeline import ADMINISTERS_WEBHOOKS, TenantSession, WebhooksAdmin
from stockyard.core.dependencies import SettingsDep
from stockyard.core.pagination import Paging, id_cursor
from stockyard.core.preconditions import IfMatch, etag, expected_version
from stockyard.core.responses import AUTHENTICATED, error_responses
from stockyard.core.settings import Settings
from stockyard.webhooks import service as webhooks_service
from stockyard.webhooks.schemas import (
    DeliveryPage,
    DeliveryState,
    ReplayRequest,
    ReplayResult,
    TestDelivery,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookRead,
    WebhookSecret,
    WebhookUpdate,
)
from stockyard.webhooks.service import Keys

router = APIRouter(prefix="/api/v1", tags=["webhooks"])

READ = error_responses(*AUTHENTICATED)
ITEM = error_responses(*AUTHENTICATED, 404)
CREATE = error_responses(*AUTHENTICATED, 409)
UPDATE = error_responses(*AUTHENTICATED, 404, 412, 428)


def _keys(settings: Settings) -> Keys:
    assert settings.secret_key is not None  # the lifespan refuses to start without one
    return Keys(settings.secret_key.get_secret_value())


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookCreated,
    responses=CREATE,
    summary="Subscribe an endpoint to events; the answer holds its signing secret, once",
)
async def create_webhook(
    body: WebhookCreate,
    session: TenantSession,
    principal: WebhooksAdmin,
    settings: SettingsDep,
    response: Response,
) -> WebhookCreated:
    created = await webhooks_service.create_endpoint(
        session,
        principal,
        body=body,
        keys=_keys(settings),
        allow_private=settings.webhook_allow_private_targets,
    )
    response.headers["Location"] = f"/api/v1/webhooks/{created.id}"
    response.headers["ETag"] = etag(created.version)
    return created


@router.get(
    "/webhooks",
    response_model=WebhookPage,
    responses=READ,
    dependencies=[ADMINISTERS_WEBHOOKS],
)
async def list_webhooks(session: TenantSession, paging: Paging) -> WebhookPage:
    endpoints = await webhooks_service.list_endpoints(
        session, after_id=id_cursor(paging.cursor), limit=paging.fetch
    )
    page, next_cursor = paging.cut(endpoints, lambda endpoint: (str(endpoint.id),))
    return WebhookPage(
        items=[WebhookRead.model_validate(endpoint) for endpoint in page], next_cursor=next_cursor
    )


@router.get(
    "/webhooks/{webhook_id}",
    response_model=WebhookRead,
    responses=ITEM,
    dependencies=[ADMINISTERS_WEBHOOKS],
)
async def get_webhook(
    webhook_id: uuid.UUID, session: TenantSession, response: Response
) -> WebhookRead:
    endpoint = await webhooks_service.get_endpoint(session, endpoint_id=webhook_id)
    response.headers["ETag"] = etag(endpoint.version)
    return WebhookRead.model_validate(endpoint)


@router.patch("/webhooks/{webhook_id}", response_model=WebhookRead, responses=UPDATE)
async def update_webhook(
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    session: TenantSession,
    principal: WebhooksAdmin,
    settings: SettingsDep,
    response: Response,
    if_match: IfMatch,
) -> WebhookRead:
    endpoint = await webhooks_service.update_endpoint(
        session,
        principal,
        endpoint_id=webhook_id,
        version=expected_version(if_match),
        body=body,
        allow_private=settings.webhook_allow_private_targets,
    )
    response.headers["ETag"] = etag(endpoint.version)
    return WebhookRead.model_validate(endpoint)


@router.delete("/webhooks/{webhook_id}", status_code=204, responses=ITEM)
async def delete_webhook(
    webhook_id: uuid.UUID, session: TenantSession, principal: WebhooksAdmin
) -> None:
    await webhooks_service.delete_endpoint(session, principal, endpoint_id=webhook_id)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    response_model=WebhookSecret,
    responses=ITEM,
    summary="A new signing secret; the old one keeps signing for 24 hours",
)
async def rotate_webhook_secret(
    webhook_id: uuid.UUID,
    session: TenantSession,
    principal: WebhooksAdmin,
    settings: SettingsDep,
) -> WebhookSecret:
    return await webhooks_service.rotate_secret(
        session, principal, endpoint_id=webhook_id, keys=_keys(settings)
    )


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    responses=ITEM,
    dependencies=[ADMINISTERS_WEBHOOKS],
    summary="The endpoint's deliveries, newest first, with every attempt",
)
async def list_webhook_deliveries(
    webhook_id: uuid.UUID,
    session: TenantSession,
    paging: Paging,
    state: Annotated[DeliveryState | None, Query(description="Only deliveries in this state.")] = (
        None
    ),
) -> DeliveryPage:
    deliveries = await webhooks_service.list_deliveries(
        session,
        endpoint_id=webhook_id,
        before_id=id_cursor(paging.cursor),
        state=state,
        limit=paging.fetch,
    )
    page, next_cursor = paging.cut(deliveries, lambda delivery: (str(delivery.id),))
    return DeliveryPage(items=page, next_cursor=next_cursor)


@router.post(
    "/webhooks/{webhook_id}/test",
    status_code=202,
    response_model=TestDelivery,
    responses=ITEM,
    summary="Send a `webhook.test` event to this endpoint",
)
async def test_webhook(
    webhook_id: uuid.UUID, session: TenantSession, principal: WebhooksAdmin
) -> TestDelivery:
    return await webhooks_service.send_test(session, principal, endpoint_id=webhook_id)


@router.post(
    "/webhooks/{webhook_id}/replay",
    status_code=202,
    response_model=ReplayResult,
    responses=ITEM,
    summary="Send past events to this endpoint again",
)
async def replay_webhook(
    webhook_id: uuid.UUID,
    body: ReplayRequest,
    session: TenantSession,
    principal: WebhooksAdmin,
) -> ReplayResult:
    return await webhooks_service.replay(session, principal, endpoint_id=webhook_id, body=body)
