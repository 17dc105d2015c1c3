from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stockyard.core.bootstrap import ConfigurationError, load_settings
from stockyard.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_bad_value_is_one_clear_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STOCKYARD_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigurationError, match="STOCKYARD_LOG_LEVEL"):
        load_settings()


def test_external_mode_refuses_a_short_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKYARD_DATABASE_URL", "postgresql://owner@db.example.com/stockyard")
    monkeypatch.setenv("STOCKYARD_SECRET_KEY", "too-short")
    with pytest.raises(ConfigurationError, match="STOCKYARD_SECRET_KEY"):
        load_settings()


def test_cli_start_up_failure_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stockyard.cli", "migrate"],
        env={"STOCKYARD_DATABASE_URL": "mysql://nope", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "STOCKYARD_DATABASE_URL" in lines[0]


def test_compose_wires_api_to_postgres_and_redis_with_known_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "postgres", "redis", "migrate"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name in ("postgres", "redis", "api"):
        assert "test" in services[name]["healthcheck"], name
    known = {f"STOCKYARD_{field.upper()}" for field in Settings.model_fields}
    for name in ("api", "migrate"):
        env = services[name]["environment"]
        assert set(env) <= known, set(env) - known
        assert env["STOCKYARD_DATABASE_URL"].split("@")[1].startswith("postgres:5432/")
        assert env["STOCKYARD_REDIS_URL"].startswith("redis://redis:6379")
    assert services["migrate"]["command"] == ["stockyard", "migrate"]
    api_depends = services["api"]["depends_on"]
    assert api_depends["migrate"]["condition"] == "service_completed_successfully"
    assert api_depends["postgres"]["condition"] == "service_healthy"
    assert services["api"]["environment"]["STOCKYARD_MIGRATE_ON_START"] == "false"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER stockyard" in dockerfile and '"stockyard", "serve"' in dockerfile
    # `stockyard backup` needs a pg_dump no older than compose's PostgreSQL (trixie's is 17).
    compose_major = int(compose["services"]["postgres"]["image"].split(":")[1])
    assert "postgresql-client" in dockerfile and "slim-trixie" in dockerfile
    assert compose_major <= 17


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for field in Settings.model_fields:
        assert f"`STOCKYARD_{field.upper()}`" in readme, field
