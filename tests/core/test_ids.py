"""Time-ordered ids: minted one at a time or in a batch, they only ever grow."""

from __future__ import annotations

import itertools

from stockyard.core.ids import new_id, new_ids


def test_ids_minted_singly_and_in_batches_strictly_increase() -> None:
    first = new_id()
    batch = new_ids(10_000)  # more than one millisecond's 4,096 counter values
    last = new_id()
    minted = [first, *batch, last]
    assert all(earlier < later for earlier, later in itertools.pairwise(minted))
    assert len(set(minted)) == len(minted)
    assert {identifier.version for identifier in minted} == {7}
    assert new_ids(0) == []
