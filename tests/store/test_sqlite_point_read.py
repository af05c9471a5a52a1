"""``SqliteStore._point_read``: the hot path's reads by primary key on the event
loop's own connection — it sees what the writer committed, never waits (a busy
database sends the read to a reader thread), names the operation in its errors,
and an in-memory store reads through its one connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from posp.errors import StoreError
from posp.store.sqlite import MEMORY, SqliteStore

SQL = "SELECT value FROM kv WHERE key = ?"


async def opened(path: str) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    await store._write("create", "CREATE TABLE kv (key TEXT PRIMARY KEY, value INTEGER)")
    return store


async def test_sees_every_committed_write(tmp_path: Path) -> None:
    store = await opened(str(tmp_path / "s.db"))
    try:
        assert await store._point_read("kv", SQL, ["a"]) == []
        for value in range(3):
            await store._write("put", "INSERT OR REPLACE INTO kv VALUES ('a', ?)", [value])
            assert [r["value"] for r in await store._point_read("kv", SQL, ["a"])] == [value]
    finally:
        await store.close()


class BusyConnection:
    """A connection whose database answers busy (a checkpoint resetting the WAL)."""

    def __init__(self) -> None:
        self.calls = 0

    def execute(self, sql: str, params: Any) -> Any:
        self.calls += 1
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        pass


async def test_a_busy_database_sends_the_read_to_a_reader_thread(tmp_path: Path) -> None:
    store = await opened(str(tmp_path / "s.db"))
    try:
        await store._write("put", "INSERT INTO kv VALUES ('a', 7)")
        busy = BusyConnection()
        store._inline = busy  # type: ignore[assignment]
        assert [r["value"] for r in await store._point_read("kv", SQL, ["a"])] == [7]
        assert busy.calls == 1
    finally:
        await store.close()


async def test_errors_name_the_operation_not_the_driver_text(tmp_path: Path) -> None:
    store = await opened(str(tmp_path / "s.db"))
    try:
        with pytest.raises(StoreError, match=r"^risk_snapshot: database error"):
            await store._point_read("risk_snapshot", "SELECT nope FROM kv", [])
        with pytest.raises(StoreError, match=r"^risk_snapshot: "):
            await store._point_read("risk_snapshot", SQL, [object()])
    finally:
        await store.close()


async def test_the_inline_connection_cannot_write(tmp_path: Path) -> None:
    store = await opened(str(tmp_path / "s.db"))
    try:
        with pytest.raises(StoreError):
            await store._point_read("kv", "INSERT INTO kv VALUES ('b', 1)", [])
        assert await store._point_read("kv", SQL, ["b"]) == []
    finally:
        await store.close()


async def test_in_memory_reads_through_its_one_connection() -> None:
    store = await opened(MEMORY)
    try:
        await store._write("put", "INSERT INTO kv VALUES ('a', 1)")
        assert [r["value"] for r in await store._point_read("kv", SQL, ["a"])] == [1]
        assert store._inline is None
    finally:
        await store.close()


async def test_close_closes_the_inline_connection(tmp_path: Path) -> None:
    store = await opened(str(tmp_path / "s.db"))
    await store._point_read("kv", SQL, ["a"])
    inline = store._inline
    assert inline is not None
    await store.close()
    assert store._inline is None
    with pytest.raises(sqlite3.ProgrammingError):
        inline.execute("SELECT 1")
