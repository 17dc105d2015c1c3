"""Signup: the tenant row and its first owner, in one transaction."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.auth import repository as auth_repository
from stockyard.auth.grants import normalize_email
from stockyard.auth.models import User
from stockyard.auth.passwords import hash_password
from stockyard.auth.scopes import Role
from stockyard.core import tenancy
from stockyard.core.database import insert_unique
from stockyard.tenants.exceptions import SlugTaken
from stockyard.tenants.models import Tenant


async def create_tenant(
    session: AsyncSession, *, name: str, slug: str, owner_email: str, owner_password: str
) -> Tenant:
    """A new tenant and its owner. The transaction is scoped to the new tenant before the
    first insert, so row-level security admits exactly these rows and no others."""
    tenant_id = uuid.uuid4()
    password_hash = await hash_password(owner_password)
    await tenancy.set_current_tenant(session, tenant_id)
    tenant = Tenant(id=tenant_id, slug=slug, name=name)
    await insert_unique(session, tenant, taken=SlugTaken())
    await auth_repository.add(
        session,
        User(
            tenant_id=tenant_id,
            id=uuid.uuid4(),
            email=normalize_email(owner_email),
            password_hash=password_hash,
            role=Role.OWNER.value,
        ),
    )
    return tenant
