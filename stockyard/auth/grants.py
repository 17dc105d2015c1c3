"""The grants: sign-in (password, client credentials), refresh-token rotation with reuse
detection, and revocation. The rules that make tokens safe to hand out."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from cryptography.fernet import InvalidToken as UnreadableSeal
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard.auth import repository as auth_repository
from stockyard.auth.exceptions import InvalidClient, InvalidGrant, InvalidScope, RefreshTokenReused
from stockyard.auth.guard import limit_login, login_account
from stockyard.auth.keys import KeyRing
from stockyard.auth.limiter import RateLimiter, revoked_token_of
from stockyard.auth.models import RefreshToken, TokenFamily, User
from stockyard.auth.passwords import verify_password
from stockyard.auth.scopes import ROLE_SCOPES, STAFF_SCOPES, Role
from stockyard.auth.tokens import (
    FIRST_PARTY_CLIENT_ID,
    LEEWAY_SECONDS,
    hash_refresh_token,
    issue_access_token,
    new_refresh_token,
    tenant_of_refresh_token,
    verify_access_token,
)
from stockyard.core import audit_trail, metrics, tenancy
from stockyard.core.audit_trail import PLATFORM_TENANT_ID
from stockyard.core.errors import InvalidToken
from stockyard.core.principal import CLIENT_ROLE, STAFF_ROLE, PrincipalKind
from stockyard.core.sealing import sealer
from stockyard.core.settings import Settings
from stockyard.tenants import repository as tenant_repository

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str | None
    scope: str


def normalize_email(email: str) -> str:
    return email.strip().lower()


def hash_client_secret(secret: str) -> str:
    """Client secrets are 256 random bits, so a fast hash is as strong as a slow one here."""
    return hashlib.sha256(secret.encode()).hexdigest()


async def _issue(
    settings: Settings,
    keyring: KeyRing,
    *,
    subject: uuid.UUID,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID,
    role: str,
    scopes: frozenset[str],
    refresh_token: str | None,
    client_id: str = FIRST_PARTY_CLIENT_ID,
) -> TokenPair:
    access = await issue_access_token(
        keyring,
        issuer=settings.issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
        subject=subject,
        tenant_id=tenant_id,
        session_id=session_id,
        role=role,
        scopes=scopes,
        client_id=client_id,
    )
    return TokenPair(access.token, access.expires_in, refresh_token, " ".join(sorted(scopes)))


def granted_scopes(requested: frozenset[str] | None, allowed: frozenset[str]) -> frozenset[str]:
    """RFC 6749 section 3.3: the token carries exactly what was asked for, when the subject
    may have all of it; nothing asked for means everything the subject may have."""
    if requested is None:
        return allowed
    if not requested <= allowed:
        raise InvalidScope(
            "The requested scope exceeds what this account may be granted.",
        )
    return requested


async def _start_family(
    session: AsyncSession,
    settings: Settings,
    keyring: KeyRing,
    user: User,
    *,
    requested: frozenset[str] | None,
) -> TokenPair:
    scopes = granted_scopes(requested, ROLE_SCOPES[Role(user.role)])
    family = TokenFamily(
        tenant_id=user.tenant_id,
        id=uuid.uuid4(),
        user_id=user.id,
        expires_at=datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_seconds),
        scopes=sorted(scopes),
    )
    token, token_hash = new_refresh_token(user.tenant_id)
    await auth_repository.add(session, family)
    await auth_repository.add(
        session,
        RefreshToken(
            tenant_id=user.tenant_id, id=uuid.uuid4(), family_id=family.id, token_hash=token_hash
        ),
    )
    return await _issue(
        settings,
        keyring,
        subject=user.id,
        tenant_id=user.tenant_id,
        session_id=family.id,
        role=user.role,
        scopes=scopes,
        refresh_token=token,
    )


async def password_grant(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    keyring: KeyRing,
    limiter: RateLimiter,
    *,
    tenant_slug: str,
    email: str,
    password: str,
    address: str,
    scope: frozenset[str] | None = None,
) -> TokenPair:
    """Sign a user in. Every failure looks the same and costs the same password check.

    Three steps, and no database connection is held across the slow middle one: look the
    user up (and count the guess against the account's guard), check the password, then
    create the session in a transaction that share-locks the user and insists the password
    checked is still its password and the user still active. A password change or
    deactivation that commits first makes the sign-in fail (a role change gives the session
    the new role); one that commits after it waits for it and then revokes the new session
    with the others."""
    email = normalize_email(email)
    user: User | None = None
    async with sessionmaker() as session, session.begin():
        tenant_id = await tenant_repository.tenant_id_for_slug(session, tenant_slug)
        if tenant_id is not None:
            await tenancy.set_current_tenant(session, tenant_id)
            user = await auth_repository.get_user_by_email(session, email)
    await limit_login(
        limiter,
        settings,
        account=login_account(tenant_id or tenant_slug, email),
        address=address,
    )
    valid = await verify_password(password, user.password_hash if user else None)
    if tenant_id is None or user is None or not valid or not user.is_active:
        log.info("login_failed", tenant=tenant_slug)
        if tenant_id is not None:
            await audit_trail.record_apart(
                sessionmaker,
                tenant_id=tenant_id,
                actor_type=PrincipalKind.USER,
                actor_id=user.id if user else None,
                action="auth.login_failed",
                status=400,
                details={"reason": "inactive" if user and valid else "bad_credentials"},
            )
        raise InvalidGrant("The email, password or tenant is wrong.")
    async with tenancy.tenant_transaction(sessionmaker, tenant_id) as session:
        if not await tenant_repository.share_lock_live_tenant(session, tenant_id):
            raise InvalidGrant("The email, password or tenant is wrong.")
        current = await auth_repository.lock_user_for_session(session, user.id)
        if current is None or not current.is_active or current.password_hash != user.password_hash:
            raise InvalidGrant("The account changed while signing in; sign in again.")
        # A role changed meanwhile is simply the role the new session gets.
        return await _start_family(session, settings, keyring, current, requested=scope)


async def staff_password_grant(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    keyring: KeyRing,
    limiter: RateLimiter,
    *,
    email: str,
    password: str,
    address: str,
    scope: frozenset[str] | None = None,
) -> TokenPair:
    """Sign a support engineer in: a short-lived token for the support routes only, with no
    tenant and no refresh token. The look-up's connection is released before the check."""
    email = normalize_email(email)
    async with sessionmaker() as session, session.begin():
        staff = await auth_repository.staff_for_login(session, email)
    await limit_login(limiter, settings, account=login_account("staff", email), address=address)
    valid = await verify_password(password, staff.password_hash if staff else None)
    if staff is None or not valid or not staff.is_active:
        log.info("staff_login_failed")
        raise InvalidGrant("The email or password is wrong.")
    return await _issue(
        settings,
        keyring,
        subject=staff.id,
        tenant_id=PLATFORM_TENANT_ID,
        session_id=uuid.uuid4(),
        role=STAFF_ROLE,
        scopes=granted_scopes(scope, STAFF_SCOPES),
        refresh_token=None,
    )


async def refresh_grant(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    keyring: KeyRing,
    limiter: RateLimiter,
    *,
    refresh_token: str,
    scope: frozenset[str] | None = None,
) -> TokenPair:
    """Rotate a refresh token. A used one presented again revokes its whole family, except the
    immediately previous token inside the configured grace window (concurrent client refresh).
    The new access token may be narrowed to part of the sign-in's scope, never widened."""
    tenant_id = tenant_of_refresh_token(refresh_token)
    if tenant_id is None:
        raise InvalidGrant()
    await tenancy.set_current_tenant(session, tenant_id)
    presented = await auth_repository.lock_refresh_token(session, hash_refresh_token(refresh_token))
    if presented is None:
        raise InvalidGrant()
    family = await auth_repository.get_family(session, presented.family_id)
    now = datetime.now(UTC)
    if family is None or family.revoked_at is not None or family.expires_at <= now:
        raise InvalidGrant()

    grace = timedelta(seconds=settings.refresh_reuse_grace_seconds)
    parent = presented
    if presented.used_at is not None:
        child = await auth_repository.child_of(session, presented.id)
        if child is None or child.used_at is not None or presented.used_at + grace <= now:
            # The request fails, yet the revocation must stand: give back the presented
            # token's lock with the request's transaction, then revoke in one of its own.
            family_id, user_id = family.id, family.user_id  # rollback expires the rows
            await session.rollback()
            await _revoke_reused_family(
                sessionmaker,
                limiter,
                tenant_id=tenant_id,
                presented_hash=hash_refresh_token(refresh_token),
                family_id=family_id,
                user_id=user_id,
            )
            raise RefreshTokenReused("This refresh token was already used; the session is revoked.")
        # Tolerated: the client refreshed twice at once (or retried a lost response). It gets
        # the pair the first refresh returned, so whichever response it keeps stays valid.
        replayed = _unseal_pair(settings, presented.successor_sealed, now=now)
        if replayed is not None:
            return replayed
        parent = child  # nothing kept (the grace window was off then): rotate on from it
    parent.used_at = now

    user = await auth_repository.get_user(session, family.user_id)
    if user is None or not user.is_active:
        raise InvalidGrant()
    signed_in_with = frozenset(family.scopes) if family.scopes is not None else None
    role_scopes = ROLE_SCOPES[Role(user.role)]
    scopes = granted_scopes(scope, role_scopes & (signed_in_with or role_scopes))
    token, token_hash = new_refresh_token(tenant_id)
    await auth_repository.add(
        session,
        RefreshToken(
            tenant_id=tenant_id,
            id=uuid.uuid4(),
            family_id=family.id,
            parent_id=parent.id,
            token_hash=token_hash,
        ),
    )
    pair = await _issue(
        settings,
        keyring,
        subject=user.id,
        tenant_id=tenant_id,
        session_id=family.id,
        role=user.role,
        scopes=scopes,
        refresh_token=token,
    )
    if grace:
        parent.successor_sealed = _seal_pair(settings, pair, now=now)
    return pair


async def _revoke_reused_family(
    sessionmaker: async_sessionmaker[AsyncSession],
    limiter: RateLimiter,
    *,
    tenant_id: uuid.UUID,
    presented_hash: bytes,
    family_id: uuid.UUID,
    user_id: uuid.UUID,
) -> None:
    """Revoke a family whose used token came back, in a transaction of its own. It takes the
    refresh-token locks in the order every refresh takes them (the presented token, then its
    child, then the family's rows), so it queues behind concurrent refreshes instead of
    deadlocking with one that holds the presented token and waits for its child."""
    async with tenancy.tenant_transaction(sessionmaker, tenant_id) as session:
        await auth_repository.lock_refresh_token(session, presented_hash)
        revoked = await auth_repository.revoke_families(
            session, family_ids=[family_id], reason="refresh_reuse"
        )
        await limiter.revoke_on_commit(session, revoked)
        await audit_trail.record_for(
            session,
            tenant_id=tenant_id,
            actor_type=PrincipalKind.USER,
            actor_id=user_id,
            action="auth.refresh_reuse_detected",
            resource_type="token_family",
            resource_id=family_id,
            status=400,
        )
    log.warning("refresh_reuse_detected", family_id=str(family_id))
    metrics.REFRESH_REUSE.inc()


def _seal_pair(settings: Settings, pair: TokenPair, *, now: datetime) -> bytes:
    secret_key = settings.secret_key
    assert secret_key is not None, "the API does not start without a secret key"
    payload = {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "scope": pair.scope,
        "expires_at": now.timestamp() + pair.expires_in,
    }
    return sealer(secret_key.get_secret_value(), "refresh-replay").encrypt(
        json.dumps(payload).encode()
    )


def _unseal_pair(settings: Settings, sealed: bytes | None, *, now: datetime) -> TokenPair | None:
    secret_key = settings.secret_key
    if sealed is None or secret_key is None:
        return None
    try:
        payload = json.loads(
            sealer(secret_key.get_secret_value(), "refresh-replay").decrypt(sealed)
        )
    except UnreadableSeal:  # sealed under another secret key: nothing to replay
        return None
    expires_in = int(payload["expires_at"] - now.timestamp())
    if expires_in <= 0:
        return None
    return TokenPair(
        payload["access_token"], expires_in, payload["refresh_token"], payload["scope"]
    )


async def client_credentials_grant(
    session: AsyncSession,
    settings: Settings,
    keyring: KeyRing,
    *,
    client_id: str,
    client_secret: str,
    scope: frozenset[str] | None = None,
) -> TokenPair:
    """An access token for a tenant application; `sid` is the client, so all its tokens share
    one rate-limit bucket and die together when the client is deleted."""
    try:
        client_uuid = uuid.UUID(client_id)
    except ValueError:
        raise InvalidClient() from None
    tenant_id = await auth_repository.tenant_id_for_client(session, client_uuid)
    if tenant_id is None:
        raise InvalidClient()
    await tenancy.set_current_tenant(session, tenant_id)
    client = await auth_repository.get_client(session, client_uuid)
    if (
        client is None
        or client.revoked_at is not None
        or not hmac.compare_digest(client.secret_hash, hash_client_secret(client_secret))
    ):
        raise InvalidClient()
    return await _issue(
        settings,
        keyring,
        subject=client.id,
        tenant_id=tenant_id,
        session_id=client.id,
        role=CLIENT_ROLE,
        scopes=granted_scopes(scope, frozenset(client.scopes)),
        refresh_token=None,
        client_id=str(client.id),
    )


async def revoke_token(
    session: AsyncSession,
    settings: Settings,
    keyring: KeyRing,
    limiter: RateLimiter,
    *,
    token: str,
) -> None:
    """RFC 7009: revoke what was presented. A refresh token ends its whole family; an access
    token ends itself (until it would have expired), its session living on. Unknown, invalid
    or expired tokens are silently ignored: there is nothing left to revoke."""
    if token.count(".") == 2:  # a JWT: an access token (refresh tokens have one dot)
        await _revoke_access_token(session, settings, keyring, limiter, token=token)
        return
    tenant_id = tenant_of_refresh_token(token)
    if tenant_id is None:
        return
    await tenancy.set_current_tenant(session, tenant_id)
    presented = await auth_repository.lock_refresh_token(session, hash_refresh_token(token))
    if presented is None:
        return
    revoked = await auth_repository.revoke_families(
        session, family_ids=[presented.family_id], reason="revoked_by_client"
    )
    await limiter.revoke_on_commit(session, revoked)


async def _revoke_access_token(
    session: AsyncSession,
    settings: Settings,
    keyring: KeyRing,
    limiter: RateLimiter,
    *,
    token: str,
) -> None:
    try:
        claims = await verify_access_token(
            keyring, token, issuer=settings.issuer, audience=settings.jwt_audience
        )
    except InvalidToken:
        return
    if claims.is_staff:
        return  # no tenant to record it in; staff tokens live minutes and end with the account
    await tenancy.set_current_tenant(session, claims.tenant_id)
    # Verification allows LEEWAY_SECONDS past `exp`: the revocation must outlive that too.
    usable_until = claims.expires_at + LEEWAY_SECONDS
    await auth_repository.revoke_access_token(
        session, claims=claims, expires_at=datetime.fromtimestamp(usable_until, UTC)
    )
    await limiter.revoke_on_commit(session, [], [revoked_token_of(claims)])


async def revoke_user_sessions(
    session: AsyncSession,
    limiter: RateLimiter,
    *,
    user_id: uuid.UUID,
    reason: str,
    keep_family: uuid.UUID | None = None,
) -> None:
    """Kill every session of a user at once: access tokens fail on their very next request."""
    revoked = await auth_repository.revoke_families(
        session, user_id=user_id, except_family=keep_family, reason=reason
    )
    await limiter.revoke_on_commit(session, revoked)
