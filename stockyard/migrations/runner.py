"""`stockyard migrate` as a function: Alembic upgrade as the owner, then the app role's
password, the audit trail's partitions and a current signing key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import URL

from stockyard.audit import repository as audit_repository
from stockyard.auth import keys
from stockyard.core.bootstrap import ConfigurationError
from stockyard.core.database import create_engine, create_sessionmaker, owner_url
from stockyard.core.settings import APP_ROLE, Settings
from stockyard.events import repository as events_repository

log = structlog.get_logger()

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(database_url: URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: URL, revision: str = "head") -> None:
    """Apply migrations as the owner. Runs its own event loop: call it from sync code."""
    command.upgrade(alembic_config(database_url), revision)


def migrate(settings: Settings, database_url: URL | None = None) -> None:
    """Upgrade the schema as the owner, set the app role's password, ensure a signing key."""
    url = database_url or owner_url(settings)
    upgrade(url)
    asyncio.run(_after_upgrade(settings, url))
    log.info("migrated", database=url.database)


async def _after_upgrade(settings: Settings, url: URL) -> None:
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
            await events_repository.ensure_partitions(session)
            await keys.ensure_current_key(
                session,
                secret_key=settings.secret_key.get_secret_value(),
                access_token_ttl=settings.access_token_ttl_seconds,
            )
    finally:
        await engine.dispose()


def known_revisions() -> list[str]:
    """Every schema revision this Stockyard's migrations know (a backup from any of them can
    be restored and migrated to head)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return [revision.revision for revision in script.walk_revisions()]
