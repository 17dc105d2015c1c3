"""The operator CLI, invoked in-process with the server's settings."""

from __future__ import annotations

import asyncio
import logging

from typer.testing import CliRunner

from stockyard.cli import app as cli
from stockyard.core.settings import Settings


def cli_env(settings: Settings) -> dict[str, str]:
    assert settings.secret_key is not None and settings.database_url and settings.redis_url
    return {
        "STOCKYARD_DATABASE_URL": settings.database_url,
        "STOCKYARD_REDIS_URL": settings.redis_url,
        "STOCKYARD_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "STOCKYARD_SECRET_KEY": settings.secret_key.get_secret_value(),
        "STOCKYARD_LOG_LEVEL": "WARNING",
        # Operators run the CLI with the server's settings; rotation timing depends on these.
        "STOCKYARD_JWKS_MAX_AGE_SECONDS": str(settings.jwks_max_age_seconds),
        "STOCKYARD_SIGNING_KEY_CACHE_SECONDS": str(settings.signing_key_cache_seconds),
    }


async def run_cli(settings: Settings, *args: str, stdin: str | None = None) -> tuple[int, str]:
    """Invoke the CLI in-process; it configures logging for itself, so put ours back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, list(args), env=cli_env(settings), input=stdin
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return result.exit_code, result.output
