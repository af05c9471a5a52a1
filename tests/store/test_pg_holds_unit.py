"""``posp.store.pg_holds.write_batch`` against a recording connection: a counter
row missing at the lock (purged between the batch's CREATE and LOCK) fails the
batch before any hold or record is written (its transaction rolls back, entries
too), so its requests run alone; the adds
applied are summed per key with the expiry of the applied holds only."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from posp.errors import StoreError
from posp.risk.counters import AddResult, CounterAdd
from posp.store.pg_holds import APPLY, LOCK, RECORDS, write_batch

UNTIL = dt.date(2026, 12, 31)
LATER = dt.date(2027, 1, 31)


class Hold:
    def __init__(self, *adds: CounterAdd) -> None:
        self.hold = adds
        self.result: AddResult | None = None

    def record_row(self, entry_id: int) -> list[Any]:
        return [entry_id, None, "T", "2026-12-03", "v1", "pass", 0, "[]", "[]", "now"]


class Recording:
    """Answers LOCK with ``rows`` and the entry insert with one id per entry."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def execute(self, sql: str, *args: Any) -> None:
        self.calls.append((sql, args))

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        self.calls.append((sql, args))
        if sql == LOCK:
            return self.rows
        return [{"id": 10 + n, "inserted": True} for n in range(len(args[0]))]


def row(key: str, amount: int = 0) -> dict[str, Any]:
    return {
        "counter_key": key,
        "amount_minor": amount,
        "txn_count": 0,
        "refunded_minor": 0,
        "last_at_s": 0,
    }


async def test_a_row_missing_at_the_lock_fails_the_batch_before_any_hold() -> None:
    connection = Recording([row("a")])  # "b" is gone
    hold = Hold(CounterAdd("a", 100, 1, 0, 5, UNTIL), CounterAdd("b", 100, 1, 0, 5, UNTIL))
    with pytest.raises(StoreError, match="vanished"):
        await write_batch(connection, "INSERT", [["t1"]], [0], [hold])
    assert [sql for sql, _ in connection.calls if sql in (APPLY, RECORDS)] == []
    assert hold.result is None


async def test_applied_adds_are_summed_and_a_refused_hold_adds_nothing() -> None:
    connection = Recording([row("m", 900)])
    first = Hold(CounterAdd("m", 50, 1, 0, 7, UNTIL, max_amount_minor=1_000))
    refused = Hold(CounterAdd("m", 80, 1, 0, 9, LATER, max_amount_minor=1_000))  # 950 + 80
    second = Hold(CounterAdd("m", 50, 1, 0, 8, UNTIL, max_amount_minor=1_000))
    holds = [first, refused, second]
    ids = await write_batch(connection, "INSERT", [["t1", "t2", "t3"]], [0, 1, 2], holds)
    assert ids == [10, 11, 12]
    assert first.result is not None and first.result.applied
    assert refused.result is not None and not refused.result.applied
    assert refused.result.before["m"].amount_minor == 950  # after the first hold
    assert second.result is not None and second.result.applied  # 950 + 50 = 1,000
    (args,) = [a for sql, a in connection.calls if sql == APPLY]
    assert args == (["m"], [100], [2], [0], [8], [UNTIL.isoformat()])  # not the refused expiry
    (records,) = [a for sql, a in connection.calls if sql == RECORDS]
    assert records[0] == [10, 12]
