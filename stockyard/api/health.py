"""Liveness and dependencies, each probe bounded so /health can never hang."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from stockyard.auth.limiter import LimiterDep
from stockyard.core.dependencies import EngineDep

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_SECONDS = 2.0

Status = Literal["ok", "down"]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    db: Status
    redis: Status


async def _database_ok(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return True


async def _probe(check: Coroutine[Any, Any, bool]) -> Status:
    try:
        ok = await asyncio.wait_for(check, PROBE_TIMEOUT_SECONDS)
    except Exception:
        return "down"
    return "ok" if ok else "down"


class Liveness(BaseModel):
    status: Literal["ok"]


@router.get("/livez", response_model=Liveness, summary="The process answers (no dependencies)")
async def read_liveness() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/health",
    response_model=Health,
    summary="Is the API and what it depends on up",
    responses={503: {"model": Health}},
)
async def read_health(engine: EngineDep, limiter: LimiterDep) -> JSONResponse:
    db, redis = await asyncio.gather(_probe(_database_ok(engine)), _probe(limiter.ping()))
    healthy = db == "ok" and redis == "ok"
    body = Health(status="ok" if healthy else "degraded", db=db, redis=redis)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
