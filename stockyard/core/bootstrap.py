"""Getting from configuration to running services: settings, and the embedded PostgreSQL and
Redis when none are configured. Migrating them is stockyard/migrations/runner.py."""

from __future__ import annotations

import os
from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from stockyard.core.embedded import EmbeddedServices, ensure_secret_key
from stockyard.core.settings import Settings

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
