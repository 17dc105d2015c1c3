"""Fixtures the inventory tests share."""

from __future__ import annotations

import httpx
import pytest

from tests.support.helpers import Tenant
from tests.support.inventory import Inventory


@pytest.fixture
def inv(client: httpx.AsyncClient, tenant: Tenant) -> Inventory:
    """Terse inventory calls as the test's tenant."""
    return Inventory(client, tenant)
