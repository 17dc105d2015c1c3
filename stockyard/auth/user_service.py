"""Tenant admins manage their users: who may sign in, and with which role."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard.auth import grants
from stockyard.auth import repository as auth_repository
from stockyard.auth.exceptions import (
    EmailTaken,
    LastOwner,
    PasswordChangedMeanwhile,
    RoleNotAllowed,
    WrongPassword,
)
from stockyard.auth.guard import limit_login, login_account
from stockyard.auth.limiter import RateLimiter
from stockyard.auth.models import StaffUser, User
from stockyard.auth.passwords import hash_password, verify_password
from stockyard.auth.schemas import UserCreate, UserUpdate
from stockyard.auth.scopes import Role
from stockyard.core import audit_trail, tenancy
from stockyard.core.database import insert_unique, save_new_version
from stockyard.core.errors import Conflict, Forbidden, NotFound, PreconditionFailed
from stockyard.core.principal import AccessClaims, PrincipalKind
from stockyard.core.settings import Settings


def _may_manage(actor: AccessClaims, role: str) -> bool:
    """Owners manage everyone; admins manage everyone but owners."""
    return actor.role == Role.OWNER or role != Role.OWNER


async def list_users(
    session: AsyncSession,
    *,
    role: Role | None,
    is_active: bool | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[User]:
    return await auth_repository.list_users(
        session, role=role.value if role else None, is_active=is_active, after=after, limit=limit
    )


async def get_user(session: AsyncSession, *, user_id: uuid.UUID) -> User:
    user = await auth_repository.get_user(session, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def create_user(session: AsyncSession, principal: AccessClaims, *, body: UserCreate) -> User:
    """Add a user. Only an owner may create another owner."""
    if not _may_manage(principal, body.role):
        raise RoleNotAllowed()
    user = User(
        tenant_id=principal.tenant_id,
        id=uuid.uuid4(),
        email=grants.normalize_email(str(body.email)),
        name=body.name,
        password_hash=await hash_password(body.password),
        role=body.role.value,
    )
    await insert_unique(session, user, taken=EmailTaken())
    await audit_trail.record(
        session,
        principal,
        action="user.create",
        resource_type="user",
        resource_id=user.id,
        status=201,
        details={"role": user.role},
    )
    return user


async def update_user(
    session: AsyncSession,
    limiter: RateLimiter,
    principal: AccessClaims,
    *,
    user_id: uuid.UUID,
    version: int,
    body: UserUpdate,
) -> User:
    """Change name, role or active flag. Admins can't touch owners or make one; the tenant
    always keeps an active owner; a role change or deactivation ends the user's sessions."""
    user = await get_user(session, user_id=user_id)
    if user.version != version:
        raise PreconditionFailed()
    new_role = body.role.value if body.role is not None else user.role
    if not _may_manage(principal, user.role) or not _may_manage(principal, new_role):
        raise RoleNotAllowed()
    new_active = body.is_active if body.is_active is not None else user.is_active
    stays_owner = new_role == Role.OWNER and new_active
    if (
        user.role == Role.OWNER
        and user.is_active
        and not stays_owner
        and len(await auth_repository.lock_active_owners(session)) <= 1
    ):
        raise LastOwner()
    role_changed = new_role != user.role
    deactivated = user.is_active and not new_active
    if "name" in body.model_fields_set:
        user.name = body.name
    user.role, user.is_active = new_role, new_active
    await save_new_version(session, user)
    await audit_trail.record(
        session,
        principal,
        action="user.deactivate" if deactivated else "user.update",
        resource_type="user",
        resource_id=user.id,
        status=200,
        details={"changed": sorted(body.model_fields_set), "role": user.role},
    )
    if role_changed or deactivated:
        await grants.revoke_user_sessions(
            session,
            limiter,
            user_id=user.id,
            reason="role_changed" if role_changed else "deactivated",
        )
    return user


async def deactivate_user(
    session: AsyncSession, limiter: RateLimiter, principal: AccessClaims, *, user_id: uuid.UUID
) -> None:
    """DELETE keeps the user (history points at it) but ends every session at once."""
    user = await get_user(session, user_id=user_id)
    if not user.is_active:
        return
    await update_user(
        session,
        limiter,
        principal,
        user_id=user_id,
        version=user.version,
        body=UserUpdate(is_active=False),
    )


async def change_own_password(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    limiter: RateLimiter,
    principal: AccessClaims,
    *,
    current_password: str,
    new_password: str,
    address: str,
) -> None:
    """A user changes their password; every other session of theirs ends.

    A wrong current password is a password guess: it counts against the same guard as a
    sign-in to this account and is audited, so a stolen access token can't be turned into
    a takeover by guessing. Like sign-in, no database connection is held while hashing: the
    user is read in one short transaction and written in another, which insists the
    password is still the one that was checked."""
    if principal.is_client:
        raise Forbidden("API clients have no password.")
    async with tenancy.tenant_transaction(sessionmaker, principal.tenant_id) as session:
        user = await get_user(session, user_id=principal.subject)
    await limit_login(
        limiter,
        settings,
        account=login_account(principal.tenant_id, user.email),
        address=address,
    )
    if not await verify_password(current_password, user.password_hash):
        await audit_trail.record_apart(
            sessionmaker,
            tenant_id=principal.tenant_id,
            actor_type=PrincipalKind.USER,
            actor_id=user.id,
            action="auth.password_change_failed",
            status=400,
            details={"reason": "wrong_current_password"},
        )
        raise WrongPassword()
    new_hash = await hash_password(new_password)
    async with tenancy.tenant_transaction(sessionmaker, principal.tenant_id) as session:
        current = await auth_repository.lock_user(session, user.id)
        if current is None or current.password_hash != user.password_hash:
            raise PasswordChangedMeanwhile()
        current.password_hash = new_hash
        await save_new_version(session, current)
        await audit_trail.record(
            session,
            principal,
            action="user.password_change",
            resource_type="user",
            resource_id=current.id,
            status=204,
        )
        await grants.revoke_user_sessions(
            session,
            limiter,
            user_id=current.id,
            reason="password_changed",
            keep_family=principal.session_id,
        )


async def create_staff(session: AsyncSession, *, email: str, password_hash: str) -> StaffUser:
    """A support engineer account (operators only, from the CLI)."""
    staff = StaffUser(id=uuid.uuid4(), email=email, password_hash=password_hash, role="support")
    await insert_unique(session, staff, taken=Conflict("A staff account with this email exists."))
    return staff
