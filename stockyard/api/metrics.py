"""GET /metrics in the Prometheus text format, behind STOCKYARD_METRICS_TOKEN when set."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stockyard.core import metrics
from stockyard.core.dependencies import DriverPoolDep, EngineDep, SettingsDep
from stockyard.core.errors import Unauthorized

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def read_metrics(
    settings: SettingsDep,
    engine: EngineDep,
    driver: DriverPoolDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    token = settings.metrics_token
    if token is not None:
        expected = f"Bearer {token.get_secret_value()}"
        if authorization is None or not hmac.compare_digest(authorization, expected):
            raise Unauthorized("A metrics token is required.")
    pool = engine.pool
    metrics.DB_POOL_IN_USE.labels("sessions").set(pool.checkedout())  # type: ignore[attr-defined]
    # The pools have no overflow (core/database.create_engine): their size is their ceiling.
    metrics.DB_POOL_CAPACITY.labels("sessions").set(pool.size())  # type: ignore[attr-defined]
    # The driver pool (the hot reads and the ledger's writes) opens connections on demand:
    # those it holds minus the idle ones are out.
    metrics.DB_POOL_IN_USE.labels("driver").set(driver.get_size() - driver.get_idle_size())
    metrics.DB_POOL_CAPACITY.labels("driver").set(driver.get_max_size())
    return Response(generate_latest(metrics.exposition_registry()), media_type=CONTENT_TYPE_LATEST)
