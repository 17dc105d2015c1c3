"""Time-ordered ids (UUIDv7, RFC 9562) for ledger rows.

Movements sort by (occurred_at, id); with v7 ids, rows recorded in one instant (a bulk batch)
keep the order they were written in, and new rows land at the right edge of the index.
"""

from __future__ import annotations

import array
import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)


def new_id() -> uuid.UUID:
    """A UUIDv7, strictly increasing within this process (a 12-bit counter orders ids minted
    in the same millisecond)."""
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, 0
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def new_ids(count: int) -> list[uuid.UUID]:
    """`count` UUIDv7s in order, as `new_id` would mint them one by one, with one lock, one
    clock read and one draw of randomness (a bulk batch and its events need thousands)."""
    global _last_ms, _counter
    stamps = []
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        ms, counter = (now_ms, -1) if now_ms > _last_ms else (_last_ms, _counter)
        for _ in range(count):
            counter += 1
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
            stamps.append((ms << 80) | _VERSION_AND_VARIANT | (counter << 64))
        _last_ms, _counter = ms, counter
    # 64 random bits per id in one unpacking, of which rand_b keeps 62.
    randomness = array.array("Q", os.urandom(8 * count))
    mask = (1 << 62) - 1
    # `uuid.UUID(int=...)` without the constructor's argument parsing and range checks, which
    # were most of the time a 10,000-item bulk batch spent minting its ~20,000 ids (30 ms ->
    # 12 ms): the two fields set are the ones the constructor sets.
    make, assign, unknown = object.__new__, object.__setattr__, uuid.SafeUUID.unknown
    minted = []
    for stamp, bits in zip(stamps, randomness, strict=True):
        identifier = make(uuid.UUID)
        assign(identifier, "int", stamp | (bits & mask))
        assign(identifier, "is_safe", unknown)
        minted.append(identifier)
    return minted
