"""`stockyard migrate` as a function: Alembic upgrade, then the app role's password."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(database_url: URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: URL, revision: str = "head") -> None:
    """Apply migrations as the owner. Runs its own event loop: call it from sync code."""
    command.upgrade(alembic_config(database_url), revision)
