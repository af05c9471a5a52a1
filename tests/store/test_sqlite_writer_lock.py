"""The SQLite writer's file lock (``<file>-writer.lock``, ``posp.store.sqlite_worker``):
held for exactly the span of each write transaction, so writers of one file in
several processes queue in the kernel instead of sleeping in SQLite's busy
handler; a writer that holds it waits for nobody else's, and it is let go when a
transaction fails."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from posp.errors import StoreError
from posp.store.sqlite import SqliteStore


def lock_is_free(path: Path) -> bool:
    """Whether another open file description could take the lock right now."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


async def test_the_lock_is_held_during_a_write_and_free_between(tmp_path: Path) -> None:
    path = tmp_path / "posp.db"
    store = SqliteStore(path)
    await store.open()
    lock = Path(f"{path}-writer.lock")
    try:
        assert lock_is_free(lock)
        inside, release = threading.Event(), threading.Event()
        seen: list[bool] = []

        def job(connection: sqlite3.Connection) -> None:
            inside.set()
            release.wait(30)

        writing = asyncio.ensure_future(store._write_job("hold", job))
        await asyncio.to_thread(inside.wait, 30)
        seen.append(lock_is_free(lock))
        release.set()
        await writing
        seen.append(lock_is_free(lock))
        assert seen == [False, True]
    finally:
        await store.close()


async def test_a_failed_transaction_lets_the_lock_go(tmp_path: Path) -> None:
    path = tmp_path / "posp.db"
    store = SqliteStore(path)
    await store.open()
    try:

        def job(connection: sqlite3.Connection) -> None:
            connection.execute("COMMIT")  # ends the writer's transaction: its COMMIT fails

        with pytest.raises(StoreError):
            await store._write_job("broken", job)
        assert lock_is_free(Path(f"{path}-writer.lock"))
        await store._write("after", "CREATE TABLE t (x INTEGER)")  # the writer goes on
    finally:
        await store.close()


async def test_a_second_store_on_the_file_waits_for_the_lock_and_then_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "posp.db"
    first, second = SqliteStore(path), SqliteStore(path)
    await first.open()
    await second.open()
    try:
        await first._write("create", "CREATE TABLE t (x INTEGER)")
        inside, release = threading.Event(), threading.Event()

        def job(connection: sqlite3.Connection) -> None:
            connection.execute("INSERT INTO t VALUES (1)")
            inside.set()
            release.wait(30)

        holding = asyncio.ensure_future(first._write_job("hold", job))
        await asyncio.to_thread(inside.wait, 30)
        waiting = asyncio.ensure_future(second._write("insert", "INSERT INTO t VALUES (2)"))
        release.set()
        await asyncio.gather(holding, waiting)
        rows = await second._read("all", "SELECT x FROM t ORDER BY x")
        assert [r["x"] for r in rows] == [1, 2]
    finally:
        await first.close()
        await second.close()


async def test_a_writer_stuck_holding_the_lock_does_not_stop_the_others(tmp_path: Path) -> None:
    """The file lock held elsewhere (a stuck process) for longer than the wait:
    the writer goes on without it, under SQLite's own lock, and closes."""
    path = tmp_path / "posp.db"
    store = SqliteStore(path)
    await store.open()
    assert store._writer is not None
    store._writer._write_lock_wait_s = 0.05
    stuck = os.open(f"{path}-writer.lock", os.O_RDWR)
    try:
        fcntl.flock(stuck, fcntl.LOCK_EX)
        await store._write("create", "CREATE TABLE t (x INTEGER)")
        await store._write("insert", "INSERT INTO t VALUES (1)")
        assert [r["x"] for r in await store._read("all", "SELECT x FROM t")] == [1]
    finally:
        await store.close()
        os.close(stuck)
