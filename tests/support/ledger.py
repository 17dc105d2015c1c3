"""The ledger's invariant, checked from outside the application's own code."""

from __future__ import annotations

import uuid

import asyncpg

# Every balance of the tenant beside what its ledger and its active reservations say.
_BALANCES_VS_LEDGER = """
    SELECT p.sku, l.code, b.on_hand, b.reserved,
           (SELECT coalesce(sum(delta), 0) FROM movement m
             WHERE m.product_id = b.product_id AND m.location_id = b.location_id) AS ledger,
           (SELECT coalesce(sum(quantity), 0) FROM reservation r
             WHERE r.product_id = b.product_id AND r.location_id = b.location_id
               AND r.status = 'active') AS held
    FROM balance b
    JOIN product p ON p.id = b.product_id
    JOIN location l ON l.id = b.location_id
    ORDER BY p.sku, l.code
"""


async def balances_against_ledger(
    app_db: asyncpg.Connection, tenant_id: uuid.UUID
) -> list[asyncpg.Record]:
    """Read as the app role inside the tenant (RLS decides what is visible)."""
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
        return list(await app_db.fetch(_BALANCES_VS_LEDGER))


def drifted(rows: list[asyncpg.Record]) -> list[str]:
    """Balances whose on_hand differs from their ledger or whose reserved differs from their
    active reservations."""
    return [
        f"{row['sku']}@{row['code']}: on_hand {row['on_hand']} ledger {row['ledger']}, "
        f"reserved {row['reserved']} held {row['held']}"
        for row in rows
        if row["on_hand"] != row["ledger"] or row["reserved"] != row["held"]
    ]
