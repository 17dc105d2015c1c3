from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.receiver import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = await Receiver().start()
    yield running
    await running.stop()
