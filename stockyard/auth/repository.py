"""All SQL of the auth domain (runs inside a tenant context unless it says otherwise)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.auth.models import (
    ApiClient,
    RefreshToken,
    RevokedAccessToken,
    SigningKey,
    TokenFamily,
    User,
)
from stockyard.core.principal import AccessClaims


async def is_session_revoked(session: AsyncSession, claims: AccessClaims) -> bool:
    """Whether the token's family (or API client, or staff account) was revoked."""
    if claims.is_staff:
        active = await session.scalar(
            text("SELECT stockyard_staff_is_active(:id)"), {"id": claims.subject}
        )
        return not active
    if claims.is_client:
        revoked_at = await session.execute(
            select(ApiClient.revoked_at).where(ApiClient.id == claims.session_id)
        )
    else:
        revoked_at = await session.execute(
            select(TokenFamily.revoked_at).where(TokenFamily.id == claims.session_id)
        )
    row = revoked_at.first()
    return row is None or row[0] is not None


async def is_access_token_revoked(session: AsyncSession, claims: AccessClaims) -> bool:
    """Whether this one access token was revoked on its own (RFC 7009)."""
    found = await session.scalar(
        select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == claims.token_id)
    )
    return found is not None


async def revoke_access_token(
    session: AsyncSession, *, claims: AccessClaims, expires_at: datetime
) -> None:
    """Record one access token as revoked (idempotent), and forget the ones past expiry."""
    await session.execute(
        pg_insert(RevokedAccessToken)
        .values(
            tenant_id=claims.tenant_id,
            jti=claims.token_id,
            session_id=claims.session_id,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing()
    )
    await session.execute(
        delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < func.now())
    )


async def revoked_access_tokens_since(
    session: AsyncSession, since: datetime
) -> list[tuple[uuid.UUID, str, datetime]]:
    """Across all tenants, through the SECURITY DEFINER look-up: still-live revoked tokens."""
    rows = await session.execute(
        text("SELECT session_id, jti, expires_at FROM stockyard_revoked_access_tokens_since(:s)"),
        {"s": since},
    )
    return [(row.session_id, row.jti, row.expires_at) for row in rows]


async def revoked_sessions_since(session: AsyncSession, since: datetime) -> list[uuid.UUID]:
    """Across all tenants, through the SECURITY DEFINER look-up (the app role can't see them)."""
    rows = await session.scalars(
        text("SELECT stockyard_revoked_sessions_since(:since)"), {"since": since}
    )
    return list(rows)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.scalar(select(User).where(User.id == user_id))


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email))


async def lock_user_for_session(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user as it stands now, share-locked until the transaction ends: a password change,
    role change or deactivation (which update this row before they revoke sessions) waits
    for a session created under this lock, and so revokes it too."""
    statement = (
        select(User)
        .where(User.id == user_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


async def lock_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    statement = (
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


async def lock_active_owners(session: AsyncSession) -> Sequence[uuid.UUID]:
    """Lock the tenant's active owners, in id order (one order for every writer), so two
    concurrent demotions can't both pass the last-owner check."""
    rows = await session.scalars(
        select(User.id)
        .where(User.role == "owner", User.is_active)
        .order_by(User.id)
        .with_for_update()
    )
    return list(rows)


async def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)
    await session.flush()


async def lock_refresh_token(session: AsyncSession, token_hash: bytes) -> RefreshToken | None:
    """The token row, locked: two concurrent refreshes of one token serialize here."""
    return await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    )


async def get_family(session: AsyncSession, family_id: uuid.UUID) -> TokenFamily | None:
    return await session.scalar(select(TokenFamily).where(TokenFamily.id == family_id))


async def child_of(session: AsyncSession, token_id: uuid.UUID) -> RefreshToken | None:
    return await session.scalar(
        select(RefreshToken).where(RefreshToken.parent_id == token_id).with_for_update()
    )


async def revoke_families(
    session: AsyncSession,
    *,
    family_ids: Sequence[uuid.UUID] | None = None,
    user_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
    except_family: uuid.UUID | None = None,
    reason: str,
) -> list[uuid.UUID]:
    """Revoke live families (by id, by user, or every one of a tenant) and their refresh
    tokens; return their ids."""
    statement = update(TokenFamily).where(TokenFamily.revoked_at.is_(None))
    if tenant_id is not None:
        # Named outright: the operator's owner connection is not bound by row-level security.
        statement = statement.where(TokenFamily.tenant_id == tenant_id)
    if family_ids is not None:
        statement = statement.where(TokenFamily.id.in_(family_ids))
    if user_id is not None:
        statement = statement.where(TokenFamily.user_id == user_id)
    if except_family is not None:
        statement = statement.where(TokenFamily.id != except_family)
    revoked = list(
        await session.scalars(
            statement.values(revoked_at=func.now(), revoked_reason=reason).returning(TokenFamily.id)
        )
    )
    if revoked:
        tokens = update(RefreshToken).where(
            RefreshToken.family_id.in_(revoked), RefreshToken.revoked_at.is_(None)
        )
        if tenant_id is not None:
            tokens = tokens.where(RefreshToken.tenant_id == tenant_id)
        await session.execute(tokens.values(revoked_at=func.now()))
    return revoked


async def tenant_id_for_client(session: AsyncSession, client_id: uuid.UUID) -> uuid.UUID | None:
    result = await session.scalar(
        text("SELECT stockyard_tenant_id_for_client(:client_id)"), {"client_id": client_id}
    )
    return result if isinstance(result, uuid.UUID) else None


async def get_client(session: AsyncSession, client_id: uuid.UUID) -> ApiClient | None:
    return await session.scalar(select(ApiClient).where(ApiClient.id == client_id))


async def list_clients(
    session: AsyncSession, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[ApiClient]:
    statement = select(ApiClient).where(ApiClient.revoked_at.is_(None))
    if after is not None:
        statement = statement.where(
            tuple_(ApiClient.created_at, ApiClient.id) > tuple_(after[0], after[1])
        )
    rows = await session.scalars(
        statement.order_by(ApiClient.created_at, ApiClient.id).limit(limit)
    )
    return list(rows)


async def list_users(
    session: AsyncSession,
    *,
    role: str | None,
    is_active: bool | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[User]:
    statement = select(User)
    if role is not None:
        statement = statement.where(User.role == role)
    if is_active is not None:
        statement = statement.where(User.is_active == is_active)
    if after is not None:
        statement = statement.where(User.id > after)
    rows = await session.scalars(statement.order_by(User.id).limit(limit))
    return list(rows)


async def lock_key_rotation(session: AsyncSession) -> None:
    """Serialise rotations (until the transaction ends): each sees the key the last one made."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('stockyard.keys.rotate'))"))


async def retire_current_keys(session: AsyncSession, *, retires_at: datetime) -> None:
    """Give the newest key its retirement date; a staged key that has not started signing
    yet never will (it retires now: it signed nothing, so nothing needs it to verify)."""
    await session.execute(
        update(SigningKey)
        .where(SigningKey.retires_at.is_(None))
        .values(
            retires_at=case((SigningKey.activates_at > func.now(), func.now()), else_=retires_at)
        )
    )


async def current_key_id(session: AsyncSession) -> str | None:
    return await session.scalar(
        select(SigningKey.kid).where(SigningKey.retires_at.is_(None)).limit(1)
    )


async def list_signing_keys(session: AsyncSession) -> list[SigningKey]:
    statement = select(SigningKey).order_by(
        SigningKey.activates_at.desc(), SigningKey.created_at.desc()
    )
    return list(await session.scalars(statement))


async def staff_for_login(session: AsyncSession, email: str) -> Any | None:
    """A support engineer by email, through a function the API role may call (the staff
    table itself is not granted to it)."""
    result = await session.execute(
        text("SELECT id, password_hash, role, is_active FROM stockyard_staff_for_login(:email)"),
        {"email": email},
    )
    return result.first()
