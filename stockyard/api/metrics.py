"""GET /metrics in the Prometheus text format, behind STOCKYARD_METRICS_TOKEN when set."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stockyard.core import metrics
from stockyard.core.dependencies import EngineDep, ReaderPoolDep, SettingsDep, WriterPoolDep
from stockyard.core.errors import Unauthorized

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def read_metrics(
    settings: SettingsDep,
    engine: EngineDep,
    reads: ReaderPoolDep,
    writes: WriterPoolDep,
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
    # The driver's pools (the hot reads, the ledger's writes) open connections on demand:
    # those they hold minus the idle ones are out.
    for name, driver_pool in (("reads", reads), ("writes", writes)):
        in_use = driver_pool.get_size() - driver_pool.get_idle_size()
        metrics.DB_POOL_IN_USE.labels(name).set(in_use)
        metrics.DB_POOL_CAPACITY.labels(name).set(driver_pool.get_max_size())
    return Response(generate_latest(metrics.exposition_registry()), media_type=CONTENT_TYPE_LATEST)
