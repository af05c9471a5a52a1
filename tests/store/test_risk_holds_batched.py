"""Concurrent risk holds, each with its pending journal entry
(``insert_entry(then=HoldWithEntry)``), on SQLite and PostgreSQL — where the
store group-commits them (``posp.store.pg_holds``: one transaction for many,
every key created and locked in key order, the holds decided in arrival order):
a shared counter (a merchant's day) never passes its cap however the requests
are batched, exactly the holds that fit are applied and recorded, a duplicate
fails only its own caller, two instances on one database stay within the cap,
and a batch that fails as a whole gives each request its own outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg
import pytest

from posp.errors import DuplicateTransaction, StoreError, StoreUnavailable
from posp.risk.counters import AddResult, CounterAdd
from posp.store import postgres
from posp.store.postgres import PostgresStore
from posp.store.risk_counters import SqlRiskCounters
from posp.store.risk_records import HoldWithEntry, SqlRiskRecords
from posp.store.sql_store import SqlStore
from tests.store.conftest import StoreFactory
from tests.store.samples import entry, hold_with_entry

UNTIL = dt.date(2026, 12, 31)
SHARED = "m:898100000000001|d|2026-12-03"
CAP = 1_000
AMOUNT = 100  # ten fit under the cap


def job(card: str, amount: int = AMOUNT) -> HoldWithEntry:
    return hold_with_entry(
        (
            CounterAdd(f"c:{card}|d|2026-12-03", amount, 1, 0, 1_000, UNTIL),
            CounterAdd(SHARED, amount, 1, 0, 1_000, UNTIL, max_amount_minor=CAP),
        )
    )


async def hold_many(store: SqlStore, traces: range) -> list[tuple[HoldWithEntry, int]]:
    """One concurrent insert with a hold per trace (each its own card)."""
    jobs = [job(f"card{n}") for n in traces]
    ids = await asyncio.gather(
        *(store.insert_entry(entry(f"{n:06d}"), then=j) for n, j in zip(traces, jobs, strict=True))
    )
    return list(zip(jobs, ids, strict=True))


async def test_concurrent_holds_on_a_shared_counter_apply_exactly_what_fits(
    store: SqlStore,
) -> None:
    done = await hold_many(store, range(1, 21))
    applied = [(j, i) for j, i in done if j.result is not None and j.result.applied]
    refused = [(j, i) for j, i in done if j.result is not None and not j.result.applied]
    assert len(applied) == CAP // AMOUNT and len(refused) == 20 - CAP // AMOUNT
    for j, _ in refused:  # refused on the cap, seeing the holds applied before it
        assert j.result is not None and j.result.before[SHARED].amount_minor == CAP
    counters = SqlRiskCounters(store)
    values = await counters.snapshot([SHARED])
    assert values[SHARED].amount_minor == CAP and values[SHARED].txn_count == 10
    records = SqlRiskRecords(store)
    for j, entry_id in applied:
        assert await records.take_hold(entry_id) == tuple(a.uncapped() for a in j.hold)
    for _, entry_id in refused:
        assert await records.take_hold(entry_id) == ()
        assert await store.get_entry(entry_id) is not None  # the entry stands, to be declined
    if isinstance(store, PostgresStore):
        assert store._holds.batches < store._holds.items == 20  # they did share transactions


async def test_a_duplicate_in_a_batch_fails_only_its_own_caller(store: SqlStore) -> None:
    first = job("card1")
    await store.insert_entry(entry("000001"), then=first)
    again, other = job("card1"), job("card2")
    outcomes = await asyncio.gather(
        store.insert_entry(entry("000001"), then=again),  # the same request again
        store.insert_entry(entry("000002"), then=other),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], DuplicateTransaction)
    assert again.result is None
    assert isinstance(outcomes[1], int) and other.result is not None and other.result.applied
    values = await SqlRiskCounters(store).snapshot([SHARED, "c:card1|d|2026-12-03"])
    assert values[SHARED].amount_minor == 2 * AMOUNT
    assert values["c:card1|d|2026-12-03"].amount_minor == AMOUNT


async def test_two_instances_never_pass_a_shared_cap(factory: StoreFactory) -> None:
    one, two = await factory.new(), await factory.new()
    done = await asyncio.gather(hold_many(one, range(1, 16)), hold_many(two, range(101, 116)))
    applied = sum(1 for side in done for j, _ in side if j.result and j.result.applied)
    assert applied == CAP // AMOUNT
    values = await SqlRiskCounters(one).snapshot([SHARED])
    assert values[SHARED].amount_minor == CAP


async def test_a_batch_failing_as_a_whole_gives_each_request_its_own_outcome(
    store: SqlStore,
) -> None:
    good, bad = job("card1"), job("card2")
    outcomes = await asyncio.gather(
        store.insert_entry(entry("000001"), then=good),
        store.insert_entry(entry("000002", amount_minor=2**70), then=bad),  # no bigint
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], int) and good.result is not None and good.result.applied
    assert isinstance(outcomes[1], StoreError)
    values = await SqlRiskCounters(store).snapshot([SHARED, "c:card2|d|2026-12-03"])
    assert values[SHARED].amount_minor == AMOUNT  # the bad request's hold is not counted
    assert "c:card2|d|2026-12-03" not in values or values["c:card2|d|2026-12-03"].amount_minor == 0


async def test_a_batch_losing_its_connection_tells_every_caller_and_leaves_no_result(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the connection lost in the middle of a hold batch (after its
    decisions): every caller gets StoreUnavailable, as a lone hold would, and no
    hold is left looking applied."""
    if not isinstance(store, PostgresStore):
        pytest.skip("the hold batches are PostgreSQL's")

    async def lost(connection: Any, sql: str, columns: Any, order: Any, holds: Any) -> Any:
        for then in holds:
            then.result = AddResult(True, {})  # decided, then the connection goes
        raise asyncpg.ConnectionDoesNotExistError("connection lost")

    monkeypatch.setattr(postgres, "write_batch", lost)
    jobs = [job("card1"), job("card2")]
    outcomes = await asyncio.gather(
        *(store.insert_entry(entry(f"00000{n}"), then=j) for n, j in enumerate(jobs, 1)),
        return_exceptions=True,
    )
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    assert all(j.result is None for j in jobs)
