"""Getting from configuration to a running database: embedded services, migrations, keys."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import structlog
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import URL

from stockyard.core.database import create_engine, create_sessionmaker, owner_url
from stockyard.core.embedded import EmbeddedServices, ensure_secret_key
from stockyard.core.settings import APP_ROLE, Settings

log = structlog.get_logger()


class ConfigurationError(Exception):
    """A setting is missing or wrong; the message names the variable."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        variable = f"STOCKYARD_{field.upper()}" if field else "configuration"
        raise ConfigurationError(f"invalid {variable}: {first['msg']}") from None


@dataclass
class Runtime:
    settings: Settings
    embedded: EmbeddedServices

    @property
    def mode(self) -> str:
        database = "embedded" if self.embedded.database_url else "external"
        redis = "embedded" if self.embedded.redis_url else "external"
        return f"postgres={database} redis={redis}"


def start_runtime(settings: Settings) -> Runtime:
    """Start whatever is not configured as external, and export its URL to the environment so
    worker processes (and anything they spawn) reach the same services."""
    embedded = EmbeddedServices(settings.data_dir)
    if settings.database_url is None:
        os.environ["STOCKYARD_DATABASE_URL"] = embedded.start_postgres()
        if settings.secret_key is None:
            os.environ["STOCKYARD_SECRET_KEY"] = ensure_secret_key(settings.data_dir)
    if settings.redis_url is None:
        os.environ["STOCKYARD_REDIS_URL"] = embedded.start_redis()
    runtime = Runtime(load_settings(), embedded)
    if embedded.database_url and settings.migrate_on_start is None:
        runtime.settings = runtime.settings.model_copy(update={"migrate_on_start": True})
    log.info("services_mode", mode=runtime.mode, data_dir=str(settings.data_dir))
    return runtime


def migrate(settings: Settings, database_url: URL | None = None) -> None:
    """Upgrade the schema as the owner, set the app role's password, ensure a signing key."""
    from stockyard.migrations import runner

    url = database_url or owner_url(settings)
    runner.upgrade(url)
    asyncio.run(_after_upgrade(settings, url))
    log.info("migrated", database=url.database)


async def _after_upgrade(settings: Settings, url: URL) -> None:
    from stockyard.audit import repository as audit_repository
    from stockyard.auth import keys

    if settings.secret_key is None:
        raise ConfigurationError("invalid STOCKYARD_SECRET_KEY: required to create signing keys")
    engine = create_engine(url, settings, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            if settings.app_database_password is not None:
                # Not a bind parameter: ALTER ROLE takes no parameters; quote it as a literal.
                password = settings.app_database_password.get_secret_value().replace("'", "''")
                await session.execute(text(f"ALTER ROLE {APP_ROLE} PASSWORD '{password}'"))
            await audit_repository.ensure_partitions(session)
            await keys.ensure_current_key(
                session,
                secret_key=settings.secret_key.get_secret_value(),
                access_token_ttl=settings.access_token_ttl_seconds,
            )
    finally:
        await engine.dispose()
