"""SQLite shared by two PROCESSES (``posp serve --workers 2`` on one file): a
duplicate request is inserted once, a state change (CAS) wins once, SAF leases are
disjoint, sequences never repeat — across processes, not only across objects."""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from posp.errors import DuplicateTransaction
from posp.store.api import APPROVED, VOIDED, SafItem
from posp.store.sqlite import SqliteStore
from tests.store.samples import UTC, entry, registered

ROUNDS = 6


async def _race(path: str, node: str, entry_id: int, barrier: Barrier) -> dict[str, Any]:
    store = SqliteStore(path, node_id=node)
    await store.open()
    try:
        await asyncio.to_thread(barrier.wait, 30)
        now = dt.datetime.now(UTC)
        inserts = await asyncio.gather(
            *(store.insert_entry(entry("000030")) for _ in range(ROUNDS)), return_exceptions=True
        )
        wins = await asyncio.gather(
            *(store.transition(entry_id, (APPROVED,), VOIDED) for _ in range(ROUNDS))
        )
        polls = await asyncio.gather(*(store.due_saf(now, limit=4) for _ in range(3)))
        rrns = await asyncio.gather(*(store.next_sequence("rrn") for _ in range(20)))
        return {
            "ids": [o for o in inserts if isinstance(o, int)],
            "dupes": sum(isinstance(o, DuplicateTransaction) for o in inserts),
            "wins": sum(wins),
            "saf": [item.id for poll in polls for item in poll],
            "rrns": list(rrns),
        }
    finally:
        await store.close()


def _worker(path: str, node: str, entry_id: int, barrier: Barrier, results: Any) -> None:
    results.put(asyncio.run(_race(path, node, entry_id, barrier)))


async def _prepare(path: Path) -> int:
    store = SqliteStore(path, node_id="01")
    await store.open()
    try:
        await registered(store)
        entry_id = await store.insert_entry(entry("000020", state=APPROVED))
        now = dt.datetime.now(UTC)
        for n in range(20):
            queued = await store.insert_entry(entry(f"0000{40 + n}"))
            await store.enqueue_saf(SafItem(queued, b"p", next_attempt_at=now))
        return entry_id
    finally:
        await store.close()


def test_two_processes_on_one_file_keep_every_exactly_once_rule(tmp_path: Path) -> None:
    path = tmp_path / "posp.db"
    entry_id = asyncio.run(_prepare(path))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(target=_worker, args=(str(path), node, entry_id, barrier, results))
        for node in ("01", "02")
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert sum(len(o["ids"]) for o in outcomes) == 1
    assert sum(o["dupes"] for o in outcomes) == 2 * ROUNDS - 1
    assert sum(o["wins"] for o in outcomes) == 1
    taken = [item for o in outcomes for item in o["saf"]]
    assert len(taken) == len(set(taken)) == 20
    rrns = [n for o in outcomes for n in o["rrns"]]
    assert len(set(rrns)) == len(rrns) == 40
