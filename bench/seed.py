"""Seeding at scale with COPY: products, locations, a million movements per tenant, and the
balances that sum them."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from stockyard.core.ids import new_ids


async def seed_tenant(
    owner_dsn: str,
    tenant_id: uuid.UUID,
    *,
    products: int,
    locations: int,
    movements: int,
    seed: int,
) -> tuple[list[str], list[str], list[uuid.UUID]]:
    """Returns (skus, location codes, product ids) of the tenant."""
    rng = random.Random(seed)
    connection = await asyncpg.connect(owner_dsn)
    try:
        async with connection.transaction():
            # Scoped like the app: with FORCE RLS a non-superuser owner sees only this tenant.
            await connection.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
            product_ids = [uuid.uuid4() for _ in range(products)]
            skus = [f"SKU-{i:05d}" for i in range(products)]
            await connection.copy_records_to_table(
                "product",
                records=[
                    (tenant_id, pid, sku, f"Product {sku}", 10)
                    for pid, sku in zip(product_ids, skus, strict=True)
                ],
                columns=["tenant_id", "id", "sku", "name", "reorder_point"],
            )
            location_ids = [uuid.uuid4() for _ in range(locations)]
            codes = [f"LOC-{i:02d}" for i in range(locations)]
            await connection.copy_records_to_table(
                "location",
                records=[
                    (tenant_id, lid, code, f"Location {code}")
                    for lid, code in zip(location_ids, codes, strict=True)
                ],
                columns=["tenant_id", "id", "code", "name"],
            )
            start = datetime.now(UTC) - timedelta(days=365)
            batch = 100_000
            for offset in range(0, movements, batch):
                count = min(batch, movements - offset)
                ids = new_ids(count)
                records = [
                    (
                        tenant_id,
                        ids[i],
                        rng.choice(product_ids),
                        rng.choice(location_ids),
                        rng.randint(1, 10),
                        "receipt",
                        start + timedelta(seconds=(offset + i) * 31_536_000 // movements),
                    )
                    for i in range(count)
                ]
                await connection.copy_records_to_table(
                    "movement",
                    records=records,
                    columns=[
                        "tenant_id",
                        "id",
                        "product_id",
                        "location_id",
                        "delta",
                        "kind",
                        "occurred_at",
                    ],
                )
            await connection.execute(
                """
                INSERT INTO balance (tenant_id, product_id, location_id, on_hand, reserved)
                SELECT tenant_id, product_id, location_id, sum(delta), 0
                FROM movement WHERE tenant_id = $1
                GROUP BY tenant_id, product_id, location_id
                """,
                tenant_id,
            )
        # VACUUM too: left to autovacuum, a million fresh rows get vacuumed in the middle of
        # the measured rounds, and the server then shares the box with it.
        for table in ("product", "location", "movement", "balance"):
            await connection.execute(f"VACUUM (ANALYZE) {table}")
    finally:
        await connection.close()
    return skus, codes, product_ids
