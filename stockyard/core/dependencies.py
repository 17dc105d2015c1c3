"""What the application's lifespan built, reached through the request, one typed dependency
each: a route or a domain service names exactly what it uses.

They are `async def` although they never await: FastAPI runs a plain `def` dependency in a
worker thread, a thread hop per dependency per request for a field read."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from stockyard.core.redis import RedisClient
from stockyard.core.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def get_reader_pool(request: Request) -> asyncpg.Pool:
    reader_pool: asyncpg.Pool = request.app.state.reader_pool
    return reader_pool


async def get_writer_pool(request: Request) -> asyncpg.Pool:
    writer_pool: asyncpg.Pool = request.app.state.writer_pool
    return writer_pool


async def get_redis(request: Request) -> RedisClient:
    redis: RedisClient = request.app.state.redis
    return redis


def request_id_of(request: Request) -> str | None:
    """The id the request-context middleware gave this request (None before it ran)."""
    request_id = request.scope.get("state", {}).get("request_id")
    return request_id if isinstance(request_id, str) else None


async def get_request_id(request: Request) -> str | None:
    return request_id_of(request)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
ReaderPoolDep = Annotated[asyncpg.Pool, Depends(get_reader_pool)]
WriterPoolDep = Annotated[asyncpg.Pool, Depends(get_writer_pool)]
RedisDep = Annotated[RedisClient, Depends(get_redis)]
RequestId = Annotated[str | None, Depends(get_request_id)]
