"""The store's SQLite writer thread is never closed under a running job: cancelling a
caller mid-write and stopping the worker at once neither crashes nor loses the write."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from posp.store.sqlite_worker import SqliteWorker


def _insert(conn: sqlite3.Connection, count: int, round_no: int) -> None:
    conn.executemany(
        "INSERT INTO t (round, i) VALUES (?, ?)", [(round_no, i) for i in range(count)]
    )


async def _cancel_rounds(path: Path, rounds: int) -> None:
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (round INTEGER, i INTEGER)")
    for round_no in range(rounds):
        worker = SqliteWorker(
            lambda: sqlite3.connect(path, check_same_thread=False, isolation_level=None),
            name="test-writer",
            writes=True,
        )
        await worker.start()
        writing = asyncio.create_task(worker.run(lambda c, r=round_no: _insert(c, 50, r)))
        for _ in range(1 + round_no % 4):  # cancel at different points of the job
            await asyncio.sleep(0)
        writing.cancel()
        await worker.stop()
    with sqlite3.connect(path) as check:
        rounds_written = check.execute("SELECT COUNT(DISTINCT round) FROM t").fetchone()[0]
    assert rounds_written == rounds


async def test_cancelled_write_then_stop_keeps_the_write(tmp_path: Path) -> None:
    """50 rounds of cancel(run) + stop(): every submitted write committed, no crash."""
    await _cancel_rounds(tmp_path / "w.db", 50)


@pytest.mark.slow
async def test_cancelled_write_then_stop_1000_times(tmp_path: Path) -> None:
    """The same, 1,000 rounds."""
    await _cancel_rounds(tmp_path / "w.db", 1000)
