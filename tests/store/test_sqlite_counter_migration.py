"""Migration 0031 turns the SQLite risk_counters into a WITHOUT ROWID table: a
database holding counters from before keeps every one of them, and the store's
counter statements work on the new table."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posp.risk.counters import CounterAdd, current_key
from posp.store.migrations import CREATE_TABLE_SQL, load_migrations
from posp.store.risk_counters import SqlRiskCounters
from posp.store.sqlite import SqliteStore

TODAY = dt.date(2026, 12, 3)
ROWS = [
    ("c|aa|d|2026-12-03", 150_000, 3, 0, 100, "2026-12-10"),
    ("m|898|w|2026-W49", 900_000, 12, 5_000, 200, "2026-12-20"),
]


def schema_before(connection: sqlite3.Connection, version: int) -> None:
    """Apply (and record) every migration before ``version``."""
    connection.execute(CREATE_TABLE_SQL)
    for migration in load_migrations("sqlite"):
        if migration.version >= version:
            break
        for statement in migration.statements():
            connection.execute(statement)
        connection.execute(
            "INSERT INTO schema_migrations VALUES (?, ?, ?)",
            (migration.version, migration.name, "2026-12-01T00:00:00"),
        )


def database_before(path: Path, version: int, rows: dict[str, Sequence[Sequence[Any]]]) -> None:
    """A SQLite file as every migration before ``version`` left it, holding
    ``rows`` (an INSERT statement -> its rows)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        schema_before(connection, version)
        for insert, values in rows.items():
            connection.executemany(insert, values)
    finally:
        connection.close()


def old_database(path: Path) -> None:
    """The schema as every migration before 0031 left it, with two counters."""
    database_before(path, 31, {"INSERT INTO risk_counters VALUES (?, ?, ?, ?, ?, ?)": ROWS})


async def test_counters_from_before_survive_and_the_table_has_no_rowid(tmp_path: Path) -> None:
    path = tmp_path / "posp.db"
    old_database(path)
    store = SqliteStore(path)
    await store.open()
    try:
        counters = SqlRiskCounters(store)
        keys = [current_key(row[0]) for row in ROWS]  # as migration 0033 rewrote them
        snapshot = await counters.snapshot([*keys, "c:none|d|2026-12-03"])
        assert {k: tuple(v) for k, v in snapshot.items()} == {
            key: tuple(row[1:5]) for key, row in zip(keys, ROWS, strict=True)
        }
        add = CounterAdd(keys[0], 50_000, 1, 0, 300, TODAY + dt.timedelta(days=7))
        result = await counters.check_and_add((add,))
        assert result.applied
        after = await counters.snapshot([keys[0]])
        assert tuple(after[keys[0]]) == (200_000, 4, 0, 300)
    finally:
        await store.close()
    connection = sqlite3.connect(path)
    try:
        sql = connection.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'risk_counters'"
        ).fetchone()[0]
        indexes = {r[1] for r in connection.execute("PRAGMA index_list(risk_counters)")}
    finally:
        connection.close()
    assert "WITHOUT ROWID" in sql
    assert "risk_counters_expiry" in indexes
