from __future__ import annotations

from pathlib import Path

import asyncpg
from redis import Redis

from stockyard.core.embedded import EmbeddedServices, ensure_secret_key


async def test_embedded_data_survives_a_restart(tmp_path: Path) -> None:
    services = EmbeddedServices(tmp_path)
    url = services.start_postgres()
    redis_url = services.start_redis()
    connection = await asyncpg.connect(url)
    await connection.execute("CREATE TABLE kept (value text); INSERT INTO kept VALUES ('yes')")
    await connection.close()
    Redis.from_url(redis_url).set("kept", "yes")
    services.stop()

    again = EmbeddedServices(tmp_path)
    assert again.start_postgres() == url
    assert again.start_redis() == redis_url
    try:
        connection = await asyncpg.connect(url)
        assert await connection.fetchval("SELECT value FROM kept") == "yes"
        await connection.close()
        assert Redis.from_url(redis_url).get("kept") == b"yes"
    finally:
        again.stop()


def test_secret_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = ensure_secret_key(tmp_path)
    assert len(first) >= 32
    assert ensure_secret_key(tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
