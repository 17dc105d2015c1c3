"""The `stockyard` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard import __version__
from stockyard.core import tenancy
from stockyard.core.bootstrap import ConfigurationError, Runtime, load_settings, start_runtime
from stockyard.core.database import (
    app_url,
    create_engine,
    create_sessionmaker,
    owner_url,
    to_libpq_dsn,
)
from stockyard.core.logging import configure_logging
from stockyard.core.settings import Settings
from stockyard.migrations.runner import migrate
from stockyard.webhooks import service as webhooks_service

app = typer.Typer(help="Stockyard: multi-tenant inventory API.", no_args_is_help=True)
tenants_app = typer.Typer(help="Manage tenants.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage token signing keys.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
staff_app = typer.Typer(help="Manage platform staff (support engineers).", no_args_is_help=True)
audit_app = typer.Typer(help="Audit trail upkeep.", no_args_is_help=True)
app.add_typer(staff_app, name="staff")
app.add_typer(audit_app, name="audit")
events_app = typer.Typer(help="Event log upkeep.", no_args_is_help=True)
app.add_typer(events_app, name="events")

T = TypeVar("T")


@contextmanager
def _runtime() -> Iterator[Runtime]:
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        runtime = start_runtime(settings)
    except ConfigurationError as exc:
        typer.echo(f"stockyard: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        yield runtime
    finally:
        runtime.embedded.stop()


def _with_owner_session(runtime: Runtime, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run operator work as the database owner, in one transaction."""

    async def run() -> T:
        engine = create_engine(owner_url(runtime.settings), runtime.settings, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command("migrate")
def migrate_command() -> None:
    """Apply database migrations as the owner (creates the stockyard_app role)."""
    with _runtime() as runtime:
        migrate(runtime.settings)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="Serve HTTPS with this PEM certificate (chain) file.", dir_okay=False),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(help="The certificate's PEM private key.", dir_okay=False),
    ] = None,
) -> None:
    """Run the API. With no database or Redis URL configured, embedded ones start first."""
    import uvicorn

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise typer.BadParameter("--ssl-certfile and --ssl-keyfile go together")
    for path in (ssl_certfile, ssl_keyfile):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path}: no such file")

    from stockyard.core.http_server import BoundedHttpToolsProtocol

    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal with the handler
    # that was installed before it started. The default one would end the process on the
    # spot and skip the embedded services' shutdown below; this one unwinds like Ctrl-C.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with _runtime() as runtime, _shared_metrics_dir(workers):
        settings = runtime.settings
        if settings.should_migrate_on_start:
            migrate(settings)
        uvicorn.run(
            "stockyard.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            proxy_headers=False,
            timeout_graceful_shutdown=20,
            # httptools, with the request line and headers bounded by our own protocol
            # class; idle keep-alive connections are closed after a few seconds.
            http=BoundedHttpToolsProtocol,
            timeout_keep_alive=settings.keep_alive_seconds,
            ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
            ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        )


@contextmanager
def _shared_metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, give them one fresh directory to keep their metrics in (so any
    worker's /metrics shows the whole server), removed when the server stops."""
    from stockyard.core.metrics import MULTIPROCESS_DIR_VARIABLE

    if workers == 1 or os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="stockyard-metrics-") as directory:
        os.environ[MULTIPROCESS_DIR_VARIABLE] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIR_VARIABLE]


def _exit_on_signal(signum: int, frame: object) -> None:
    # A stop that was asked for and went cleanly is a success (exit status 0).
    raise SystemExit(0)


@tenants_app.command("create")
def tenants_create(
    slug: Annotated[str, typer.Option(help="URL-safe tenant id, used to sign in.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    owner_email: Annotated[str, typer.Option(help="The first owner's email.")],
    password_stdin: Annotated[
        bool, typer.Option(help="Read the owner's password from standard input.")
    ] = False,
) -> None:
    """Create a tenant and its first owner."""
    from pydantic import ValidationError

    from stockyard.auth import signup
    from stockyard.auth.schemas import TenantCreate
    from stockyard.core.errors import AppError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Owner password", hide_input=True, confirmation_prompt=True)
    try:
        body = TenantCreate(name=name, slug=slug, owner_email=owner_email, owner_password=password)
    except ValidationError as exc:
        first = exc.errors()[0]
        typer.echo(f"stockyard: invalid {first['loc'][0]}: {first['msg']}", err=True)
        raise typer.Exit(2) from None
    with _runtime() as runtime:
        try:
            tenant = _with_owner_session(
                runtime,
                lambda session: signup.create_tenant(
                    session,
                    name=body.name,
                    slug=body.slug,
                    owner_email=str(body.owner_email),
                    owner_password=body.owner_password,
                ),
            )
        except AppError as exc:
            typer.echo(f"stockyard: {exc.message}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"created tenant {tenant.slug} ({tenant.id})")


@tenants_app.command("set-limit")
def tenants_set_limit(
    slug: Annotated[str, typer.Argument(help="The tenant's slug.")],
    per_minute: Annotated[int, typer.Option(min=1, help="Requests per minute per token.")],
    burst: Annotated[int, typer.Option(min=1, help="Burst per token.")],
) -> None:
    """Override the per-token rate limit for one tenant (workers pick it up within 30 s)."""
    from stockyard.tenants import repository as tenant_repository

    async def work(session: AsyncSession) -> bool:
        tenant_id = await tenant_repository.tenant_id_for_slug(session, slug)
        if tenant_id is None:
            return False
        await tenancy.set_current_tenant(session, tenant_id)
        tenant = await tenant_repository.get_tenant(session, tenant_id)
        assert tenant is not None
        tenant.rate_limit_per_minute, tenant.rate_limit_burst = per_minute, burst
        return True

    with _runtime() as runtime:
        if not _with_owner_session(runtime, work):
            typer.echo(f"stockyard: no tenant {slug}", err=True)
            raise typer.Exit(1)
    typer.echo(f"{slug}: {per_minute}/min, burst {burst}")


def _with_sessionmakers(
    runtime: Runtime,
    work: Callable[
        [async_sessionmaker[AsyncSession], async_sessionmaker[AsyncSession]], Awaitable[T]
    ],
) -> T:
    """Run operator work with two sessionmakers: the app role's (row-level security binds it:
    what must only ever see one tenant) and the owner's (what must reach every row)."""

    async def run() -> T:
        app_engine = create_engine(app_url(runtime.settings), runtime.settings, pool_size=2)
        owner_engine = create_engine(owner_url(runtime.settings), runtime.settings, pool_size=2)
        try:
            return await work(create_sessionmaker(app_engine), create_sessionmaker(owner_engine))
        finally:
            await app_engine.dispose()
            await owner_engine.dispose()

    return asyncio.run(run())


@tenants_app.command("export")
def tenants_export(
    slug: Annotated[str, typer.Argument(help="The tenant's slug.")],
    path: Annotated[Path, typer.Argument(help="Where to write the zip.", dir_okay=False)],
) -> None:
    """Write every row the tenant owns to a zip of JSON Lines (one file per table, and a
    manifest of counts), read as the app role under row-level security as that tenant."""
    from stockyard.operations import service as operations

    async def work(
        app_sessions: async_sessionmaker[AsyncSession], _: async_sessionmaker[AsyncSession]
    ) -> dict[str, int] | None:
        async with app_sessions() as session, session.begin():
            found = await operations.tenant_by_slug(session, slug)
        if found is None:
            return None
        tenant_id = found.id
        partial = path.with_name(path.name + ".partial")
        # Personal data (users' emails, the audit trail): readable by the operator alone.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            async for chunk in operations.export_tenant(app_sessions, tenant_id):
                out.write(chunk)
        partial.replace(path)
        with zipfile.ZipFile(path) as archive:
            counts: dict[str, int] = json.loads(archive.read("manifest.json"))["counts"]
        return counts

    with _runtime() as runtime:
        counts = _with_sessionmakers(runtime, work)
    if counts is None:
        typer.echo(f"stockyard: no tenant {slug}", err=True)
        raise typer.Exit(1)
    for table, count in counts.items():
        typer.echo(f"{table}: {count}")
    typer.echo(f"exported {sum(counts.values())} rows of {slug} to {path}")


@tenants_app.command("delete")
def tenants_delete(
    slug: Annotated[str, typer.Argument(help="The tenant's slug.")],
    grace_days: Annotated[
        float, typer.Option(min=0, help="Days before its rows are erased (`tenants purge`).")
    ] = 30,
    now: Annotated[bool, typer.Option("--now", help="Erase every row at once.")] = False,
) -> None:
    """Delete a tenant: sign-ins and tokens stop at once; its rows are erased after the grace
    period (by `stockyard tenants purge`), or now with --now."""
    from stockyard.auth.limiter import RateLimiter, ServiceState
    from stockyard.core.redis import create_redis
    from stockyard.operations import service as operations

    async def work(
        app_sessions: async_sessionmaker[AsyncSession],
        owner_sessions: async_sessionmaker[AsyncSession],
    ) -> dict[str, int] | None:
        settings = runtime.settings
        async with app_sessions() as session, session.begin():
            found = await operations.tenant_by_slug(session, slug)
        if found is None:
            return None
        tenant_id = found.id
        # Deleting again is safe: a shorter grace (or --now) applies, revocations are resent.
        deletion = await operations.mark_deleted(
            owner_sessions, tenant_id, grace_seconds=0 if now else int(grace_days * 86400)
        )
        assert settings.redis_url is not None
        redis = create_redis(settings.redis_url, settings)
        try:
            limiter = RateLimiter(
                redis,
                prefix=settings.redis_key_prefix,
                fail_open=True,
                revocation_ttl_seconds=settings.access_token_ttl_seconds + 60,
            )
            # Every API node sees the revocations at once (PostgreSQL has them already).
            await limiter.revoke(deletion.sessions_revoked)
        finally:
            await redis.aclose()
        if limiter.state is ServiceState.DOWN:
            typer.echo(
                f"stockyard: Redis is unreachable: API nodes may accept {slug}'s tokens for up "
                f"to {settings.access_token_ttl_seconds + 60} s. Run this command again "
                "once Redis answers.",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"{slug}: deleted; {len(deletion.sessions_revoked)} sessions revoked")
        if not now:
            return {}
        await operations.erase_tenant(owner_sessions, tenant_id)
        return await operations.rows_left(owner_sessions, tenant_id)

    with _runtime() as runtime:
        left = _with_sessionmakers(runtime, work)
    if left is None:
        typer.echo(f"stockyard: no tenant {slug} (or it is deleted already)", err=True)
        raise typer.Exit(1)
    if not now:
        typer.echo(f"its rows are erased by `stockyard tenants purge` after {grace_days:g} days")
        return
    _report_erased(slug, left)


def _report_erased(slug: str, left: dict[str, int]) -> None:
    remaining = {table: count for table, count in left.items() if count}
    if remaining:
        for table, count in remaining.items():
            typer.echo(f"stockyard: {table} still holds {count} rows of {slug}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{slug}: erased; 0 rows in all {len(left)} tenant tables")


@tenants_app.command("purge")
def tenants_purge() -> None:
    """Erase every deleted tenant whose grace period has passed (run it daily)."""
    from stockyard.operations import service as operations

    async def work(
        app_sessions: async_sessionmaker[AsyncSession],
        owner_sessions: async_sessionmaker[AsyncSession],
    ) -> list[tuple[str, dict[str, int]]]:
        async with app_sessions() as session, session.begin():
            due = await operations.due_for_erasure(session)
        erased = []
        for tenant_id, slug in due:
            try:
                await operations.erase_tenant(owner_sessions, tenant_id)
                erased.append((slug, await operations.rows_left(owner_sessions, tenant_id)))
            except Exception as exc:  # one tenant's failure must not stop the others' erasure
                erased.append((slug, {f"failed: {type(exc).__name__}": 1}))
        return erased

    with _runtime() as runtime:
        erased = _with_sessionmakers(runtime, work)
    failed = []
    for slug, left in erased:
        try:
            _report_erased(slug, left)
        except typer.Exit:
            failed.append(slug)
    typer.echo(f"{len(erased) - len(failed)} tenants erased")
    if failed:
        typer.echo(f"stockyard: not erased, run purge again: {', '.join(failed)}", err=True)
        raise typer.Exit(1)


@keys_app.command("rotate")
def keys_rotate(
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="Sign with the new key at once (an emergency, e.g. a leaked key): verifiers "
            "holding a cached JWKS reject new tokens until they refetch it.",
        ),
    ] = False,
) -> None:
    """Stage a new signing key: published in JWKS at once, signing once every cache has seen
    it (JWKS max-age plus two key-cache periods). The keys it replaces sign until then and
    verify until the tokens they signed have expired."""
    from stockyard.auth import keys

    with _runtime() as runtime:
        settings = runtime.settings
        assert settings.secret_key is not None
        secret_key = settings.secret_key.get_secret_value()
        delay = (
            0.0
            if now
            else keys.publish_delay(
                jwks_max_age=settings.jwks_max_age_seconds,
                key_cache_seconds=settings.signing_key_cache_seconds,
            )
        )
        key = _with_owner_session(
            runtime,
            lambda session: keys.rotate(
                session,
                secret_key=secret_key,
                access_token_ttl=settings.access_token_ttl_seconds,
                delay=delay,
            ),
        )
    typer.echo(f"signs from {key.activates_at:%Y-%m-%dT%H:%M:%SZ}: {key.kid}")


@keys_app.command("list")
def keys_list() -> None:
    """List signing keys, newest first: staged, current (the one signing), or retiring."""
    from datetime import UTC, datetime

    from stockyard.auth import keys

    with _runtime() as runtime:
        rows = _with_owner_session(runtime, keys.list_keys)
    moment = datetime.now(UTC)
    signing = next((row.kid for row in rows if row.activates_at <= moment), None)
    for row in rows:
        if row.activates_at > moment:
            status = f"staged, signs from {row.activates_at:%Y-%m-%dT%H:%M:%SZ}"
        elif row.kid == signing:
            status = "current"
        else:
            status = f"retires {row.retires_at:%Y-%m-%dT%H:%M:%SZ}"
        typer.echo(f"{row.kid}\t{row.created_at:%Y-%m-%dT%H:%M:%SZ}\t{status}")


@staff_app.command("create")
def staff_create(
    email: Annotated[str, typer.Option(help="The engineer's email (their sign-in name).")],
    role: Annotated[str, typer.Option(help="Staff role.")] = "support",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a support engineer account: signs in with no tenant, reads only the audit trail."""
    from stockyard.auth import user_service
    from stockyard.auth.grants import normalize_email
    from stockyard.auth.passwords import MIN_PASSWORD_LENGTH, hash_password
    from stockyard.core.errors import AppError

    if role != "support":
        typer.echo("stockyard: invalid --role: only 'support' exists", err=True)
        raise typer.Exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        typer.echo(f"stockyard: the password needs {MIN_PASSWORD_LENGTH}+ characters", err=True)
        raise typer.Exit(2)

    async def work(session: AsyncSession) -> None:
        await user_service.create_staff(
            session, email=normalize_email(email), password_hash=await hash_password(password)
        )

    with _runtime() as runtime:
        try:
            _with_owner_session(runtime, work)
        except AppError as exc:
            typer.echo(f"stockyard: {exc.message}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"created staff {normalize_email(email)} (support)")


@app.command()
def trace(request_id: Annotated[str, typer.Argument(help="The X-Request-ID to follow.")]) -> None:
    """Every audit event of one request, across tenants (for operators with database access)."""
    from stockyard.audit import repository as audit_repository

    with _runtime() as runtime:
        rows = _with_owner_session(
            runtime, lambda s: audit_repository.trace(s, request_id, limit=1000)
        )
    if not rows:
        typer.echo(f"no audit events for request {request_id}")
        raise typer.Exit(1)
    for row in rows:
        typer.echo(
            f"{row.occurred_at:%Y-%m-%dT%H:%M:%S.%fZ} tenant={row.tenant_slug or row.tenant_id} "
            f"actor={row.actor_type}:{row.actor_id} action={row.action} status={row.status} "
            f"resource={row.resource_type}:{row.resource_id}"
        )


@audit_app.command("ensure-partitions")
def audit_ensure_partitions(
    months_ahead: Annotated[int, typer.Option(min=0, max=36)] = 3,
) -> None:
    """Create the audit trail's monthly partitions ahead of time (run monthly, e.g. by cron)."""
    from stockyard.audit import repository as audit_repository

    with _runtime() as runtime:
        created = _with_owner_session(
            runtime, lambda s: audit_repository.ensure_partitions(s, months_ahead=months_ahead)
        )
    typer.echo("created: " + (", ".join(created) if created else "nothing (all present)"))


@events_app.command("ensure-partitions")
def events_ensure_partitions(
    months_ahead: Annotated[int, typer.Option(min=0, max=36)] = 3,
) -> None:
    """Create the event log's monthly partitions ahead of time (run monthly, e.g. by cron)."""
    from stockyard.events import repository as events_repository

    with _runtime() as runtime:
        created = _with_owner_session(
            runtime, lambda s: events_repository.ensure_partitions(s, months_ahead=months_ahead)
        )
    typer.echo("created: " + (", ".join(created) if created else "nothing (all present)"))


@events_app.command("prune")
def events_prune(
    days: Annotated[
        int | None,
        typer.Option(min=1, help="Keep this many days (STOCKYARD_EVENT_RETENTION_DAYS)."),
    ] = None,
) -> None:
    """Drop the months of events entirely older than the retention period (run daily)."""
    from datetime import UTC, datetime, timedelta

    from stockyard.events import repository as events_repository

    with _runtime() as runtime:
        keep = days or runtime.settings.event_retention_days
        cutoff = datetime.now(UTC) - timedelta(days=keep)
        dropped = _with_owner_session(
            runtime, lambda s: events_repository.drop_partitions_before(s, cutoff)
        )
        deliveries = _with_owner_session(
            runtime, lambda s: webhooks_service.prune_deliveries(s, cutoff)
        )
    typer.echo("dropped: " + (", ".join(dropped) if dropped else "nothing (all within retention)"))
    typer.echo(f"webhook deliveries deleted: {deliveries}")


@app.command()
def worker() -> None:
    """Deliver webhooks in a process of its own (set STOCKYARD_WEBHOOK_DISPATCH=false on the
    API processes then). Stops cleanly on SIGTERM or Ctrl-C, finishing the sends in flight."""
    from stockyard.core.database import app_url, listen_dsn
    from stockyard.webhooks.dispatcher import Dispatcher

    async def run(settings: Settings) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        engine = create_engine(app_url(settings), settings)
        try:
            dispatcher = Dispatcher(
                create_sessionmaker(engine), settings, listen_dsn=listen_dsn(settings)
            )
            typer.echo("stockyard worker: delivering webhooks", err=True)
            await dispatcher.run(stopping)
        finally:
            await engine.dispose()

    with _runtime() as runtime:
        if runtime.settings.should_migrate_on_start:
            migrate(runtime.settings)
        asyncio.run(run(runtime.settings))


@app.command()
def backup(
    path: Annotated[Path, typer.Argument(help="The backup file to write.", dir_okay=False)],
) -> None:
    """Back up the whole database (pg_dump, one consistent snapshot, while the API serves).
    The secret key is not in the backup: keep STOCKYARD_SECRET_KEY apart; restoring needs it."""
    from stockyard.migrations import backup as backups

    with _runtime() as runtime:
        dsn = to_libpq_dsn(owner_url(runtime.settings))
        try:
            manifest = asyncio.run(
                backups.write_backup(
                    dsn, runtime.settings, path, lambda table: typer.echo(f"dumping {table}")
                )
            )
        except backups.BackupError as exc:
            typer.echo(f"stockyard: {exc}", err=True)
            raise typer.Exit(1) from None
    rows = manifest["rows"]
    typer.echo(
        f"backed up {manifest['tenants']} tenants, {sum(rows.values())} rows "
        f"({rows.get('movement', 0)} movements) to {path} ({path.stat().st_size} bytes)"
    )
    typer.echo("the secret key is NOT in the backup: restoring needs the same STOCKYARD_SECRET_KEY")


@app.command()
def restore(
    path: Annotated[Path, typer.Argument(help="A file `stockyard backup` wrote.", exists=True)],
    force: Annotated[
        bool, typer.Option("--force", help="Restore over a database that holds tables.")
    ] = False,
) -> None:
    """Restore a backup into an empty database (the embedded one of an empty
    STOCKYARD_DATA_DIR, or STOCKYARD_DATABASE_URL's), migrate it to this version, check that
    every balance equals its ledger, and print what came back."""
    from stockyard.inventory.ledger import maintenance
    from stockyard.migrations import backup as backups
    from stockyard.migrations.runner import known_revisions

    settings = load_settings()
    key_file = settings.data_dir / "secret_key"
    if settings.secret_key is None and settings.database_url is None and key_file.exists():
        # An embedded install restored over itself (--force) keeps its own key file.
        settings = settings.model_copy(
            update={"secret_key": SecretStr(key_file.read_text().strip())}
        )
        os.environ["STOCKYARD_SECRET_KEY"] = key_file.read_text().strip()
    try:
        manifest = backups.read_manifest(path)
        backups.check_key(manifest, settings)
        backups.check_revision(manifest, known_revisions())
    except backups.BackupError as exc:
        typer.echo(f"stockyard: {exc}", err=True)
        raise typer.Exit(1) from None
    assert settings.secret_key is not None
    with _runtime() as runtime:
        dsn = to_libpq_dsn(owner_url(runtime.settings))
        try:
            if asyncio.run(backups.tables_in(dsn)) and not force:
                raise backups.BackupError(
                    "the target database is not empty; restore into an empty one, or pass --force "
                    "to replace what it holds"
                )
            asyncio.run(
                backups.restore_dump(
                    dsn, path, clean=force, progress=lambda table: typer.echo(f"restoring {table}")
                )
            )
        except backups.BackupError as exc:
            typer.echo(f"stockyard: {exc}", err=True)
            raise typer.Exit(1) from None
        if runtime.embedded.database_url:
            # The restored install runs with the key its signing keys are sealed with.
            key_file = runtime.settings.data_dir / "secret_key"
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(settings.secret_key.get_secret_value() + "\n")
        migrate(runtime.settings)
        drift = _with_owner_session(
            runtime, lambda session: maintenance.find_drift(session, tenant_slug=None)
        )
        facts = asyncio.run(backups.database_facts(dsn))
    rows = facts.rows
    typer.echo(
        f"restored {facts.tenants} tenants, {sum(rows.values())} rows "
        f"({rows.get('movement', 0)} movements, {rows.get('audit_event', 0)} audit events); "
        f"schema {manifest['schema_revision']} -> {facts.schema_revision}"
    )
    if drift:
        typer.echo(f"stockyard: {len(drift)} balances disagree with their ledger", err=True)
        raise typer.Exit(1)
    typer.echo("check: every balance equals its ledger and its active reservations")


@app.command()
def check(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (slug).")] = None,
) -> None:
    """Recompute every balance from the ledger and report drift (exit 1 if any)."""
    from stockyard.inventory.ledger import maintenance

    with _runtime() as runtime:
        drift = _with_owner_session(
            runtime, lambda session: maintenance.find_drift(session, tenant_slug=tenant)
        )
    for row in drift:
        typer.echo(
            f"drift tenant={row.tenant_id} sku={row.sku} location={row.location} "
            f"on_hand={row.on_hand} ledger={row.ledger_on_hand} "
            f"reserved={row.reserved} held={row.held}"
        )
    if drift:
        raise typer.Exit(1)
    typer.echo("no drift: every balance equals its ledger and its active reservations")


if __name__ == "__main__":  # pragma: no cover
    app()
