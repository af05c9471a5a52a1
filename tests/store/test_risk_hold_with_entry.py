"""A risk hold run in the pending journal entry's transaction
(``SqlStore.insert_entry(then=HoldWithEntry)``), on SQLite and PostgreSQL: the
entry, the counters and the record commit together; a refused hold leaves the
entry and no record, counters untouched; a failure in ``then`` takes the entry
back with it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from posp.errors import DuplicateTransaction
from posp.risk.counters import CounterAdd
from posp.store.risk_counters import SqlRiskCounters
from posp.store.risk_records import HoldWithEntry, SqlRiskRecords
from posp.store.sql_store import SqlStore
from tests.store.samples import TID, entry, hold_with_entry

UNTIL = dt.date(2026, 12, 31)


def hold(amount: int, cap: int) -> tuple[CounterAdd, ...]:
    return (
        CounterAdd("c:x|d|2026-12-03", amount, 1, 0, 1_000, UNTIL, max_amount_minor=cap),
        CounterAdd("c:x|t:t|d|2026-12-03", amount, 1, 0, 1_000, UNTIL),
    )


def job(adds: tuple[CounterAdd, ...]) -> HoldWithEntry:
    return hold_with_entry(adds)


async def test_the_hold_and_its_record_commit_with_the_entry(store: SqlStore) -> None:
    counters = SqlRiskCounters(store)
    await counters.create_missing(hold(0, 0))  # PostgreSQL: rows before the transaction
    first = job(hold(600, 1_000))
    entry_id = await store.insert_entry(entry("000001"), then=first)
    assert first.result is not None and first.result.applied
    assert await store.get_entry(entry_id) is not None
    kept = await SqlRiskRecords(store).take_hold(entry_id)
    assert kept == tuple(a.uncapped() for a in first.hold)
    refused = job(hold(401, 1_000))  # 600 + 401 > 1,000
    refused_id = await store.insert_entry(entry("000002"), then=refused)
    assert refused.result is not None and not refused.result.applied
    assert refused.result.before["c:x|d|2026-12-03"].amount_minor == 600
    assert await store.get_entry(refused_id) is not None  # the entry stands, to be declined
    assert await SqlRiskRecords(store).take_hold(refused_id) == ()  # no record, no hold
    values = await counters.snapshot(["c:x|d|2026-12-03", "c:x|t:t|d|2026-12-03"])
    assert {k: v.amount_minor for k, v in values.items()} == {
        "c:x|d|2026-12-03": 600,
        "c:x|t:t|d|2026-12-03": 600,
    }


async def test_a_duplicate_entry_adds_no_hold(store: SqlStore) -> None:
    counters = SqlRiskCounters(store)
    await counters.create_missing(hold(0, 0))
    await store.insert_entry(entry("000001"), then=job(hold(100, 1_000)))
    again = job(hold(100, 1_000))
    with pytest.raises(DuplicateTransaction):
        await store.insert_entry(entry("000001"), then=again)
    assert again.result is None
    values = await counters.snapshot(["c:x|d|2026-12-03"])
    assert values["c:x|d|2026-12-03"].amount_minor == 100


class _FailsAfterTheHold:
    """A ``then`` that applies the hold, then fails: everything must roll back."""

    def __init__(self, inner: HoldWithEntry) -> None:
        self.inner = inner

    def sqlite(self, connection: Any, entry_id: int) -> None:
        self.inner.sqlite(connection, entry_id)
        raise RuntimeError("failed after the hold")

    async def postgres(self, connection: Any, entry_id: int) -> None:
        await self.inner.postgres(connection, entry_id)
        raise RuntimeError("failed after the hold")


async def test_a_failure_in_then_takes_the_entry_and_the_hold_back(store: SqlStore) -> None:
    counters = SqlRiskCounters(store)
    await counters.create_missing(hold(0, 0))
    inner = job(hold(300, 1_000))
    with pytest.raises(Exception, match="failed after the hold"):
        await store.insert_entry(entry("000003"), then=_FailsAfterTheHold(inner))
    assert inner.result is not None and inner.result.applied  # it ran, then rolled back
    assert await store.find_by_trace(TID, "000001", "000003") is None
    values = await counters.snapshot(["c:x|d|2026-12-03", "c:x|t:t|d|2026-12-03"])
    assert all(v.amount_minor == 0 for v in values.values())
