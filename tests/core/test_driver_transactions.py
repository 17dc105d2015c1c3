"""The hot routes' driver transactions (core/database.py TenantReads, TenantWrites)."""

from __future__ import annotations

import asyncpg
import pytest
from fastapi import FastAPI

from stockyard.core.database import TenantWrites, TransactionRolledBack, fetch
from tests.support.helpers import Tenant


async def test_a_commit_that_postgresql_answers_with_a_rollback_raises(
    app: FastAPI, tenant: Tenant
) -> None:
    """A statement that failed inside the transaction (its error caught and not re-raised)
    leaves it aborted; PostgreSQL then answers COMMIT by rolling back, without an error. The
    commit must say so, or the request would answer 2xx with nothing written."""
    writes = TenantWrites(app.state.services.writer_pool, tenant.id, timeout=5.0)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await fetch(writes, "SELECT 1 / 0")
    with pytest.raises(TransactionRolledBack):
        await writes.close(commit=True)
    async with app.state.services.writer_pool.acquire() as connection:
        assert not connection.is_in_transaction()
