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
    SUPPORT_READ = "support:read"


ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}

_ADMIN_SCOPES = frozenset(
    {
        Scope.INVENTORY_READ,
        Scope.INVENTORY_WRITE,
        Scope.USERS_ADMIN,
        Scope.CLIENTS_ADMIN,
        Scope.AUDIT_READ,
    }
)

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.VIEWER: frozenset({Scope.INVENTORY_READ}),
    Role.MEMBER: frozenset({Scope.INVENTORY_READ, Scope.INVENTORY_WRITE}),
    Role.ADMIN: _ADMIN_SCOPES,
    Role.OWNER: _ADMIN_SCOPES,
}

# API clients act for an application, never administer the tenant.
CLIENT_GRANTABLE_SCOPES = frozenset({Scope.INVENTORY_READ, Scope.INVENTORY_WRITE})

STAFF_SCOPES = frozenset({Scope.SUPPORT_READ})
