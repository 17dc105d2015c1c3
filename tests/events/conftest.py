"""Fixtures the event tests share."""

from __future__ import annotations

import httpx
import pytest

from tests.support.helpers import Tenant
from tests.support.inventory import Inventory


@pytest.fixture
def inv(client: httpx.AsyncClient, tenant: Tenant) -> Inventory:
    return Inventory(client, tenant)
