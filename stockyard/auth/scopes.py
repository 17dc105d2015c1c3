"""Roles and the scopes they carry. Scopes are the only thing routes check."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Scope(StrEnum):
    INVENTORY_READ = "inventory:read"
    INVENTORY_WRITE = "inventory:write"
    USERS_ADMIN = "users:admin"
    CLIENTS_ADMIN = "clients:admin"
    AUDIT_READ = "audit:read"
    WEBHOOKS_ADMIN = "webhooks:admin"
    SUPPORT_READ = "support:read"
    # Everything the tenant owns, in one download: owners only.
    TENANT_EXPORT = "tenant:export"


_ADMIN_SCOPES = frozenset(
    {
        Scope.INVENTORY_READ,
        Scope.INVENTORY_WRITE,
        Scope.USERS_ADMIN,
        Scope.CLIENTS_ADMIN,
        Scope.AUDIT_READ,
        Scope.WEBHOOKS_ADMIN,
    }
)

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.VIEWER: frozenset({Scope.INVENTORY_READ}),
    Role.MEMBER: frozenset({Scope.INVENTORY_READ, Scope.INVENTORY_WRITE}),
    Role.ADMIN: _ADMIN_SCOPES,
    Role.OWNER: _ADMIN_SCOPES | {Scope.TENANT_EXPORT},
}


class ClientScope(StrEnum):
    """What an API client may be granted: it acts for an application, and never administers
    the tenant's people or clients. An integration may manage the webhooks it receives."""

    INVENTORY_READ = Scope.INVENTORY_READ.value
    INVENTORY_WRITE = Scope.INVENTORY_WRITE.value
    WEBHOOKS_ADMIN = Scope.WEBHOOKS_ADMIN.value


STAFF_SCOPES = frozenset({Scope.SUPPORT_READ})
