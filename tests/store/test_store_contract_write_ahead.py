"""The store contract, part 3: money under faults — the atomic reverse-and-queue,
one 0420 per entry for ever, in-doubt entries, kept 0400s — run unchanged against
SqliteStore and PostgresStore; and SQLite's files private whatever the umask."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from posp.store.api import (
    APPROVED,
    PENDING,
    REVERSED,
    TIMED_OUT,
    DeferredReversal,
    OpenEntries,
    SafItem,
    Store,
)
from posp.store.sqlite import SqliteStore
from tests.store.samples import TID, UTC, entry, registered


async def _pending(store: Store, trace: str, **changes: object) -> int:
    if await store.get_terminal(TID) is None:
        await registered(store)
    return await store.insert_entry(entry(trace, state=PENDING, **changes))


async def test_reverse_and_queue_changes_the_state_and_queues_together(store: Store) -> None:
    entry_id = await _pending(store, "000001", network_stan="000123", network_f7="1203101010")
    won = await store.reverse_and_queue(entry_id, (PENDING,), TIMED_OUT, SafItem(entry_id, b"r"))
    assert won is True
    assert (await store.get_entry(entry_id)).state == TIMED_OUT  # type: ignore[union-attr]
    queued = await store.get_saf(entry_id)
    assert queued is not None and queued.payload == b"r" and queued.delivered_at is None
    assert await store.saf_depth() == 1


async def test_reverse_and_queue_that_loses_the_race_queues_nothing(store: Store) -> None:
    entry_id = await _pending(store, "000002")
    assert await store.transition(entry_id, (PENDING,), APPROVED)
    lost = await store.reverse_and_queue(entry_id, (PENDING,), TIMED_OUT, SafItem(entry_id, b"r"))
    assert lost is False
    assert await store.get_saf(entry_id) is None
    assert (await store.get_entry(entry_id)).state == APPROVED  # type: ignore[union-attr]


async def test_racing_reverse_and_queue_has_one_winner_and_one_0420(store: Store) -> None:
    entry_id = await _pending(store, "000003")
    results = await asyncio.gather(
        *(
            store.reverse_and_queue(
                entry_id, (PENDING, APPROVED), REVERSED, SafItem(entry_id, b"x")
            )
            for _ in range(8)
        )
    )
    assert sorted(results) == [False] * 7 + [True]
    assert await store.saf_depth() == 1


async def test_a_delivered_0420_stays_so_the_entry_never_gets_a_second(store: Store) -> None:
    entry_id = await _pending(store, "000004")
    item_id = await store.enqueue_saf(SafItem(entry_id, b"first"))
    await store.complete_saf(item_id)
    assert await store.saf_depth() == 0
    assert await store.due_saf(dt.datetime.now(UTC) + dt.timedelta(days=1)) == []
    again = await store.enqueue_saf(SafItem(entry_id, b"second"))
    assert again == item_id
    kept = await store.get_saf(entry_id)
    assert kept is not None and kept.payload == b"first" and kept.delivered_at is not None
    assert await store.saf_depth() == 0
    won = await store.reverse_and_queue(entry_id, (PENDING,), REVERSED, SafItem(entry_id, b"3"))
    assert won is True and await store.saf_depth() == 0  # state moved, no new 0420


async def test_in_doubt_entries_are_old_pending_entries_only(store: Store) -> None:
    old = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    orphan = await _pending(store, "000005", created_at=old)
    await _pending(store, "000006")  # recent: its request may still be in flight
    answered = await _pending(store, "000007", created_at=old)
    await store.transition(answered, (PENDING,), APPROVED)
    reversal = await store.insert_entry(
        entry("000005", state=PENDING, direction="reversal", txn_type="reversal", created_at=old)
    )
    cutoff = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    assert sorted(e.id for e in await store.in_doubt_entries(cutoff)) == [orphan, reversal]


async def test_open_entries_counts_the_pending_ones_and_the_rows_listing_them(
    store: Store,
) -> None:
    """What ``posp_journal_pending_entries`` and ``posp_journal_open_rows`` show.
    Pending: exact on both stores, old or recent.  Listed: on PostgreSQL
    journal_open also holds ended entries until the in-doubt read deletes them
    (an entry resolved after that read stays listed until the next one); on
    SQLite the pending entries themselves."""
    listed_until_swept = 0 if isinstance(store, SqliteStore) else 1
    assert await store.open_entries() == OpenEntries(0, 0)
    old = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    orphan = await _pending(store, "000021", created_at=old)
    await _pending(store, "000022")
    ended = [await _pending(store, f"00002{n}", created_at=old) for n in (3, 4)]
    for entry_id, state in zip(ended, (APPROVED, TIMED_OUT), strict=True):
        assert await store.transition(entry_id, (PENDING,), state)
    await store.insert_entry(entry("000025", state=APPROVED))  # never pending: never listed
    assert await store.open_entries() == OpenEntries(2, 2 + 2 * listed_until_swept)
    cutoff = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    assert [e.id for e in await store.in_doubt_entries(cutoff)] == [orphan]
    assert await store.open_entries() == OpenEntries(2, 2)
    assert await store.reverse_and_queue(orphan, (PENDING,), TIMED_OUT, SafItem(orphan, b"r"))
    assert await store.open_entries() == OpenEntries(1, 1 + listed_until_swept)
    await store.in_doubt_entries(cutoff)
    assert await store.open_entries() == OpenEntries(1, 1)


async def test_kept_reversals_wait_retry_and_are_forgotten(store: Store) -> None:
    entry_id = await _pending(store, "000008", direction="reversal", txn_type="reversal")
    now = dt.datetime.now(UTC)
    kept = DeferredReversal(entry_id, b"\x04\x00body", "UTAK", next_attempt_at=now)
    await store.defer_reversal(kept)
    await store.defer_reversal(DeferredReversal(entry_id, b"again", "OTHER"))  # idempotent
    due = await store.due_deferred(now)
    assert [(d.entry_id, d.body, d.tak_lmk, d.attempts) for d in due] == [
        (entry_id, b"\x04\x00body", "UTAK", 0)
    ]
    await store.reschedule_deferred(entry_id, now + dt.timedelta(minutes=1))
    assert await store.due_deferred(now) == []
    later = await store.due_deferred(now + dt.timedelta(minutes=1))
    assert [d.attempts for d in later] == [1]
    await store.finish_deferred(entry_id)
    assert await store.due_deferred(now + dt.timedelta(days=1)) == []


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_sqlite_files_and_new_folders_are_private_whatever_the_umask(
    tmp_path: Path,
) -> None:
    """The data directory is 0700 and posp.db, -wal, -shm, -writer.lock 0600 even under umask 022
    (they hold masked PANs, PAN hashes and 0420s)."""
    previous = os.umask(0o022)
    try:
        path = tmp_path / "data" / "sub" / "posp.db"
        store = SqliteStore(path)
        await store.open()
        try:
            await registered(store)  # a write: the -wal file exists
            assert _mode(tmp_path / "data") == 0o700
            assert _mode(tmp_path / "data" / "sub") == 0o700
            for name in ("posp.db", "posp.db-wal", "posp.db-shm", "posp.db-writer.lock"):
                assert _mode(path.parent / name) == 0o600, name
        finally:
            await store.close()
    finally:
        os.umask(previous)


async def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o755)
    path = folder / "posp.db"
    path.touch()
    path.chmod(0o644)
    store = SqliteStore(path)
    await store.open()
    await store.close()
    assert _mode(path) == 0o600
    assert _mode(folder) == 0o755  # a folder it did not create is the operator's


@pytest.mark.parametrize("umask", [0o000, 0o077])
async def test_the_file_mode_does_not_depend_on_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        store = SqliteStore(tmp_path / "x" / "posp.db")
        await store.open()
        await store.close()
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "x" / "posp.db") == 0o600
    assert _mode(tmp_path / "x") == 0o700
