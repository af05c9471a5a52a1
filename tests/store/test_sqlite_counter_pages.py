"""What a hold writes on SQLite: an add to existing counter rows with the expiry
they already have changes their table pages only, not the ``expires_on``
index (SQLite rewrites an index entry whenever an UPDATE sets its column, same
value or not); a later expiry is still written (``sqlite_extend``)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from posp.risk.counters import CounterAdd
from posp.store.risk_counters import sqlite_check_and_add
from posp.store.sqlite import SqliteStore

UNTIL = dt.date(2027, 2, 3)


def adds(count: int, expires_on: dt.date = UNTIL, cap: int | None = None) -> list[CounterAdd]:
    return [
        CounterAdd(f"c|{n:064x}|d|2026-12-03", 100, 1, 0, 5, expires_on, cap) for n in range(count)
    ]


def wal_frames(connection: sqlite3.Connection, work: list[CounterAdd]) -> int:
    """Frames appended to the WAL by one transaction running ``work``."""
    before = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    connection.execute("BEGIN IMMEDIATE")
    assert sqlite_check_and_add(connection, work).applied
    connection.execute("COMMIT")
    after = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(after[1]) - int(before[1])


@pytest.mark.parametrize("cap", [None, 10**9], ids=["uncapped", "capped"])
async def test_an_unchanged_expiry_writes_no_index_page(tmp_path: Path, cap: int | None) -> None:
    """Capped adds (holds) and uncapped ones (releases, refunds) alike: the rows
    are read first, and only a row whose expiry grows gets its index entry moved."""
    path = tmp_path / "c.db"
    store = SqliteStore(path)
    await store.open()  # the migrations: risk_counters and its expires_on index
    await store.close()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal_frames(connection, adds(300))  # rows on several table and index pages
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # One row again, same expiry: its table leaf only (with the index entry
        # rewritten as well it was two pages).
        assert wal_frames(connection, adds(1, cap=cap)) == 1
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # A later expiry: the index entry moves too.
        assert wal_frames(connection, adds(1, UNTIL + dt.timedelta(days=1), cap)) > 1
        expiry = connection.execute(
            "SELECT expires_on FROM risk_counters WHERE counter_key = ?", [adds(1)[0].key]
        ).fetchone()[0]
        assert expiry == (UNTIL + dt.timedelta(days=1)).isoformat()
    finally:
        connection.close()
