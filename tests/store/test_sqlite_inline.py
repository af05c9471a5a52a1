"""SqliteStore's writes on the loop thread (posp.store.sqlite_inline): used when
the write lock is free, never waited on, checkpointed in a thread."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posp.errors import DuplicateTransaction
from posp.store.api import APPROVED
from posp.store.sqlite import SqliteStore
from posp.store.sqlite_inline import InlineWriter, is_busy
from tests.store.samples import entry, registered


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "posp.db")
    await opened.open()
    await registered(opened)
    yield opened
    await opened.close()


def inline_of(store: SqliteStore) -> InlineWriter:
    inline = store._inline
    assert inline is not None
    return inline


async def test_a_write_with_the_lock_free_runs_inline(store: SqliteStore) -> None:
    inline = inline_of(store)
    before = inline.writes
    entry_id = await store.insert_entry(entry("000001"))
    assert await store.finish_entry(entry_id, ("pending",), state=APPROVED, response_code="00")
    assert inline.writes == before + 2
    found = await store.get_entry(entry_id)
    assert found is not None and found.state == APPROVED and found.response_code == "00"


async def test_a_duplicate_inline_is_the_same_error_and_changes_nothing(store: SqliteStore) -> None:
    await store.insert_entry(entry("000002"))
    with pytest.raises(DuplicateTransaction, match="already journaled"):
        await store.insert_entry(entry("000002"))
    assert not inline_of(store)._connection.in_transaction


async def test_a_held_write_lock_sends_the_write_to_the_thread_without_waiting_here(
    store: SqliteStore,
) -> None:
    """Another connection (another process) holds the write lock: the loop thread
    does not wait; the write goes to the writer thread and lands once the lock
    is released, exactly once."""
    inline = inline_of(store)
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        busy_before = inline.busy
        loop = asyncio.get_running_loop()
        ticks = 0

        def tick() -> None:
            nonlocal ticks
            ticks += 1

        write = asyncio.ensure_future(store.insert_entry(entry("000003")))
        for _ in range(5):
            loop.call_soon(tick)
            await asyncio.sleep(0.02)
        assert ticks == 5  # the loop kept running while the write waited in the thread
        assert not write.done()
        assert inline.busy == busy_before + 1
        other.execute("COMMIT")
        entry_id = await asyncio.wait_for(write, 10)
    finally:
        other.close()
    found = await store.find_by_trace("10000001", "000001", "000003")
    assert found is not None and found.id == entry_id


async def test_the_wal_is_checkpointed_by_a_thread(store: SqliteStore) -> None:
    inline = inline_of(store)
    inline._checkpoint_every = 20
    wal = store.path + "-wal"
    sizes = []
    for n in range(400):
        entry_id = await store.insert_entry(entry(f"{100 + n:06d}"))
        await store.finish_entry(entry_id, ("pending",), state=APPROVED)
        if n % 50 == 49:
            await asyncio.sleep(0.05)  # let the checkpoints run
            sizes.append(await asyncio.to_thread(os.path.getsize, wal))
    assert inline.writes >= 800
    # Checkpointed WAL is reused from its start: it stops growing.
    assert sizes[-1] <= sizes[1]


def test_busy_and_locked_codes_are_recognised() -> None:
    busy = sqlite3.OperationalError("database is locked")
    assert is_busy(busy)
    assert not is_busy(sqlite3.OperationalError("no such table: x"))
