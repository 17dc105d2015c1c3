"""Signing-key rotation through the operator command, seen by a running worker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from fastapi import FastAPI
from joserfc import jwk as joserfc_jwk
from joserfc import jwt as joserfc_jwt
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt
from jwt import PyJWKClient

from stockyard.auth import keys
from stockyard.core.database import create_engine, create_sessionmaker, owner_url
from stockyard.core.settings import Settings
from tests.conftest import make_settings
from tests.support.cli import cli_env, run_cli
from tests.support.helpers import Tenant, bearer, password_login, signup
from tests.support.live import LiveServer
from tests.support.serve import free_port, start_serve
from tests.support.services import TestServices


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _publish_delay(settings: Settings) -> float:
    return settings.jwks_max_age_seconds + 2 * settings.signing_key_cache_seconds


@pytest.mark.usefixtures("app")
async def test_rotation_publishes_the_new_key_before_it_signs(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    old_kid = _kid(tenant.access_token)
    code, output = await run_cli(settings, "keys", "rotate")
    assert code == 0, output
    new_kid = output.strip().rsplit(" ", 1)[-1]
    assert new_kid != old_kid

    # Published at once, not signing yet: fresh tokens still carry the old key.
    await asyncio.sleep(settings.signing_key_cache_seconds + 0.1)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert {old_kid, new_kid} <= {key["kid"] for key in jwks["keys"]}
    early = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
    assert _kid(early.json()["access_token"]) == old_kid
    code, listing = await run_cli(settings, "keys", "list")
    assert code == 0
    lines = listing.strip().splitlines()
    assert lines[0].startswith(new_kid) and "staged, signs from" in lines[0]
    assert lines[1].startswith(old_kid) and lines[1].endswith("current")

    # Once every cache has seen it, it signs; the old key keeps verifying its tokens.
    await asyncio.sleep(_publish_delay(settings))
    fresh = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
    assert _kid(fresh.json()["access_token"]) == new_kid
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 200
    assert (
        await client.get("/api/v1/me", headers=bearer(fresh.json()["access_token"]))
    ).status_code == 200
    jwks_response = await client.get("/.well-known/jwks.json")
    assert jwks_response.headers["Cache-Control"] == (
        f"public, max-age={settings.jwks_max_age_seconds}"
    )
    assert all(
        key["alg"] == "ES256" and key["kty"] == "EC" and "d" not in key
        for key in jwks_response.json()["keys"]
    )
    code, listing = await run_cli(settings, "keys", "list")
    lines = listing.strip().splitlines()
    assert lines[0].startswith(new_kid) and lines[0].endswith("current")
    assert any(line.startswith(old_kid) and "retires" in line for line in lines)


async def test_rotate_now_signs_at_once(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    code, output = await run_cli(settings, "keys", "rotate", "--now")
    assert code == 0, output
    new_kid = output.strip().rsplit(" ", 1)[-1]
    await asyncio.sleep(settings.signing_key_cache_seconds + 0.1)
    fresh = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
    assert _kid(fresh.json()["access_token"]) == new_kid


async def test_an_emergency_rotation_is_not_undone_by_a_staged_key(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    """A key was staged; then a leak forces `--now`. When the staged key's time comes, the
    emergency key keeps signing: the staged one never does."""
    code, staged = await run_cli(settings, "keys", "rotate")
    assert code == 0, staged
    code, output = await run_cli(settings, "keys", "rotate", "--now")
    assert code == 0, output
    emergency = output.strip().rsplit(" ", 1)[-1]
    await asyncio.sleep(_publish_delay(settings) + 0.2)
    fresh = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
    assert _kid(fresh.json()["access_token"]) == emergency
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert staged.strip().rsplit(" ", 1)[-1] not in {key["kid"] for key in jwks["keys"]}


async def test_concurrent_rotations_leave_one_newest_key(
    settings: Settings, owner_db: asyncpg.Connection
) -> None:
    """What `stockyard keys rotate` runs, four times at once, each in its own transaction."""
    engine = create_engine(owner_url(settings), settings, pool_size=4)
    sessionmaker = create_sessionmaker(engine)
    assert settings.secret_key is not None

    async def rotate() -> None:
        async with sessionmaker() as session, session.begin():
            await keys.rotate(
                session,
                secret_key=settings.secret_key.get_secret_value(),
                access_token_ttl=settings.access_token_ttl_seconds,
                delay=1,
            )

    try:
        await asyncio.gather(*(rotate() for _ in range(4)))
    finally:
        await engine.dispose()
    unretired = await owner_db.fetchval("SELECT count(*) FROM signing_key WHERE retires_at IS NULL")
    assert unretired == 1


async def test_a_cached_pyjwkclient_verifies_tokens_signed_after_a_rotation(
    settings: Settings, tenant: Tenant
) -> None:
    """An integrator's verifier (PyJWT's own JWKS client) fetched and cached the key set
    just before the rotation; every token signed after it still verifies. PyJWKClient
    refetches on an unknown kid at most once per cooldown (30 s by default, under the 60 s
    JWKS max-age we publish keys ahead by); here both are scaled down together."""
    with LiveServer(settings) as server:
        jwks = PyJWKClient(
            f"{server.url}/.well-known/jwks.json",
            cache_jwk_set=True,
            cooldown_duration=settings.jwks_max_age_seconds,
        )
        async with httpx.AsyncClient(base_url=server.url) as client:
            before = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
            await asyncio.to_thread(jwks.get_signing_key_from_jwt, before.json()["access_token"])
            code, output = await run_cli(settings, "keys", "rotate")
            assert code == 0, output
            new_kid = output.strip().rsplit(" ", 1)[-1]
            tokens = [before.json()["access_token"]]
            deadline = time.monotonic() + _publish_delay(settings) + 1
            while time.monotonic() < deadline or _kid(tokens[-1]) != new_kid:
                fresh = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
                tokens.append(fresh.json()["access_token"])
                await asyncio.sleep(0.2)
                assert time.monotonic() < deadline + 5, "the new key never started signing"
        for token in tokens:
            key = await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["ES256"],
                audience=settings.jwt_audience,
                issuer=settings.issuer,
            )
            assert claims["tid"] == str(tenant.id)


async def test_an_unknown_kid_does_not_reload_the_key_set_on_every_request(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    keyring = app.state.services.keyring
    loads = 0
    original = keyring.load

    async def counting_load() -> None:
        nonlocal loads
        loads += 1
        await original()

    keyring.load = counting_load
    try:
        token = tenant.access_token.split(".")
        bogus = ".".join(
            [
                jwt.utils.base64url_encode(b'{"alg":"ES256","kid":"missing-kid"}').decode(),
                token[1],
                token[2],
            ]
        )
        started = time.monotonic()
        responses = await asyncio.gather(
            *(
                client.get("/api/v1/me", headers={"Authorization": f"Bearer {bogus}"})
                for _ in range(20)
            )
        )
        elapsed = time.monotonic() - started
    finally:
        keyring.load = original
    assert {r.status_code for r in responses} == {401}
    # At most one reload per cache period (0.2 s in tests), however many requests carry the kid.
    assert loads <= 1 + int(elapsed / settings.signing_key_cache_seconds)
    assert loads < 5


@pytest.mark.usefixtures("settings")
async def test_rotation_across_two_workers_never_rejects_a_fresh_token(
    services: TestServices, tmp_path: Path
) -> None:
    """`stockyard serve --workers 2`, sign-ins and calls spread over both workers (a new
    connection each time) before, during and after a rotation: every fresh token works on
    whichever worker it meets."""
    served = make_settings(services, signing_key_cache_seconds=2.0, jwks_max_age_seconds=1)
    port = free_port()
    env = {
        **os.environ,
        **cli_env(served),
        "STOCKYARD_REDIS_KEY_PREFIX": served.redis_key_prefix,
        "STOCKYARD_MIGRATE_ON_START": "false",
        "STOCKYARD_LOGIN_RATE_LIMIT_PER_MINUTE": "1000000",
        "STOCKYARD_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE": "1000000",
        "STOCKYARD_IP_RATE_LIMIT_PER_MINUTE": "1000000",
    }
    server = await start_serve(env, port=port, workers=2, cwd=tmp_path)
    fresh_connections = httpx.Limits(max_keepalive_connections=0)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, limits=fresh_connections
        ) as client:
            tenant = await signup(client)
            code, output = await run_cli(served, "keys", "rotate")
            assert code == 0, output
            new_kid = output.strip().rsplit(" ", 1)[-1]
            deadline = time.monotonic() + _publish_delay(served) + 3
            statuses, kids = [], set()
            while time.monotonic() < deadline:
                login = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
                assert login.status_code == 200, login.text
                token = login.json()["access_token"]
                kids.add(_kid(token))
                for _ in range(2):
                    me = await client.get("/api/v1/me", headers=bearer(token))
                    statuses.append(me.status_code)
        assert new_kid in kids
        assert set(statuses) == {200}, statuses
    finally:
        server.send_signal(signal.SIGTERM)
        await asyncio.wait_for(server.wait(), 30)


async def test_joserfc_and_jwcrypto_with_a_max_age_cache_verify_every_token_across_a_rotation(
    settings: Settings, tenant: Tenant
) -> None:
    """Two other JOSE libraries integrators verify with, behind the simplest cache that honours
    the published `Cache-Control: max-age`: the key set is fetched before the rotation and
    again only once it is max-age old. Every token, verified the moment it is issued, by the
    old key and then by the new one, verifies with the set the cache holds at that moment."""
    # The old key must still sign the first token after `keys rotate` returns: with the
    # suite's 1 s max-age, a loaded machine's rotation and first sign-in took longer than the
    # 1.4 s the new key waits, and no token of the old key was seen.
    settings = settings.model_copy(update={"jwks_max_age_seconds": 4})
    with LiveServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:

            async def fetch() -> tuple[float, dict[str, Any]]:
                response = await client.get("/.well-known/jwks.json")
                max_age = int(response.headers["cache-control"].split("max-age=")[1])
                assert max_age == settings.jwks_max_age_seconds
                return time.monotonic() + max_age, response.json()

            expires, document = await fetch()
            code, output = await run_cli(settings, "keys", "rotate")
            assert code == 0, output
            new_kid = output.strip().rsplit(" ", 1)[-1]
            kids: list[str] = []
            refetches = 0
            deadline = time.monotonic() + _publish_delay(settings) + 1
            while not kids or kids[-1] != new_kid:
                assert time.monotonic() < deadline + 5, "the new key never started signing"
                fresh = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
                token = fresh.json()["access_token"]
                if time.monotonic() >= expires:
                    expires, document = await fetch()
                    refetches += 1
                _verify_with_joserfc_and_jwcrypto(token, document, settings, tenant)
                kids.append(_kid(token))
                await asyncio.sleep(0.2)
    assert kids[0] != new_kid and refetches >= 1


def _verify_with_joserfc_and_jwcrypto(
    token: str, document: dict[str, Any], settings: Settings, tenant: Tenant
) -> None:
    verified = joserfc_jwt.decode(
        token, joserfc_jwk.KeySet.import_key_set(document), algorithms=["ES256"]
    )
    joserfc_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": settings.issuer},
        aud={"essential": True, "value": settings.jwt_audience},
    ).validate(verified.claims)
    assert verified.header["typ"] == "at+jwt"
    assert verified.claims["tid"] == str(tenant.id)

    checked = jwcrypto_jwt.JWT(
        jwt=token,
        key=jwcrypto_jwk.JWKSet.from_json(json.dumps(document)),
        algs=["ES256"],
        check_claims={"iss": settings.issuer, "aud": settings.jwt_audience, "exp": None},
    )
    assert json.loads(checked.claims)["tid"] == str(tenant.id)
