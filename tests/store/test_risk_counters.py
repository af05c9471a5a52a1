"""The risk counters' contract (posp.risk.counters.VelocityCounters) against
SqliteStore and PostgresStore through posp.store.risk_counters, plus the
in-memory implementation where the behaviour is the same."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from posp.risk.counters import CounterAdd, InMemoryCounters, VelocityCounters
from posp.risk.inputs import CounterValue
from posp.store.risk_counters import SqlRiskCounters
from posp.store.sql_store import SqlStore
from tests.store.conftest import StoreFactory

UNTIL = dt.date(2026, 12, 31)


def add(key: str, amount: int = 100, **caps: int) -> CounterAdd:
    return CounterAdd(key, amount, 1, 0, 1_000, UNTIL, **caps)  # type: ignore[arg-type]


def counters_of(store: object) -> VelocityCounters:
    assert isinstance(store, SqlStore)
    return SqlRiskCounters(store)


async def test_first_add_creates_the_rows_and_later_adds_sum(store: SqlStore) -> None:
    counters = counters_of(store)
    assert await counters.snapshot(["a", "b"]) == {}
    for _ in range(3):
        assert (await counters.check_and_add([add("a"), add("b", 5)])).applied
    got = await counters.snapshot(["a", "b", "missing"])
    assert got == {"a": CounterValue(300, 3, 0, 1_000), "b": CounterValue(15, 3, 0, 1_000)}


async def test_a_cap_holds_exactly_at_the_limit_and_refuses_one_over(store: SqlStore) -> None:
    counters = counters_of(store)
    assert (await counters.check_and_add([add("a", 999, max_amount_minor=1_000)])).applied
    assert (await counters.check_and_add([add("a", 1, max_amount_minor=1_000)])).applied
    refused = await counters.check_and_add([add("a", 1, max_amount_minor=1_000)])
    assert not refused.applied and refused.before["a"].amount_minor == 1_000


async def test_a_refused_hold_changes_no_counter_at_all(store: SqlStore) -> None:
    counters = counters_of(store)
    await counters.check_and_add([add("z", 1), add("a", 1)])
    for order in ((add("a", 7), add("z", 1, max_count=1)), (add("z", 1, max_count=1), add("a", 7))):
        assert not (await counters.check_and_add(list(order))).applied
    got = await counters.snapshot(["a", "z"])
    assert got["a"] == CounterValue(1, 1, 0, 1_000) and got["z"].txn_count == 1


async def test_count_gap_and_net_caps(store: SqlStore) -> None:
    counters = counters_of(store)
    assert (await counters.check_and_add([add("n", 500, max_net_minor=500)])).applied
    await counters.apply([CounterAdd("n", 0, 0, 200, 1_000, UNTIL)])  # a refund
    assert (await counters.check_and_add([add("n", 200, max_net_minor=500)])).applied
    assert not (await counters.check_and_add([add("n", 1, max_net_minor=500)])).applied
    late = CounterAdd("g", 0, 1, 0, 1_300, UNTIL, min_gap_s=300)
    assert (await counters.check_and_add([add("g", 0)])).applied  # used at 1,000
    assert not (
        await counters.check_and_add([CounterAdd("g", 0, 1, 0, 1_299, UNTIL, min_gap_s=300)])
    ).applied
    assert (await counters.check_and_add([late])).applied
    assert not (await counters.check_and_add([add("c", 0, max_count=0)])).applied


async def test_a_release_restores_amount_and_count_but_not_the_last_use(store: SqlStore) -> None:
    counters = counters_of(store)
    held = [add("a", 400), CounterAdd("b", 0, 1, 0, 2_000, UNTIL)]
    await counters.check_and_add(held)
    await counters.apply([a.negated() for a in held])
    got = await counters.snapshot(["a", "b"])
    assert got["a"] == CounterValue(0, 0, 0, 1_000) and got["b"] == CounterValue(0, 0, 0, 2_000)


async def test_purge_deletes_only_expired_counters(store: SqlStore) -> None:
    counters = counters_of(store)
    await counters.apply([CounterAdd("old", 1, 1, 0, 1, dt.date(2026, 1, 1)), add("new")])
    assert await counters.purge_expired(dt.date(2026, 6, 1)) == 1
    assert set(await counters.snapshot(["old", "new"])) == {"new"}


@pytest.mark.parametrize("cap", [None, 10**9], ids=["uncapped", "capped"])
async def test_a_later_use_extends_the_expiry_and_an_earlier_one_never_shortens_it(
    store: SqlStore, cap: int | None
) -> None:
    counters = counters_of(store)
    week = "c:x|w|2026W49"
    await counters.check_and_add([CounterAdd(week, 1, 1, 0, 1, dt.date(2026, 2, 1), cap)])
    await counters.check_and_add([CounterAdd(week, 1, 1, 0, 2, dt.date(2026, 9, 1), cap)])
    await counters.check_and_add([CounterAdd(week, 0, 0, 0, 2, dt.date(2026, 4, 1), cap)])
    await counters.apply([CounterAdd(week, -1, -1, 0, 2, dt.date(2026, 3, 1))])  # a release
    assert await counters.purge_expired(dt.date(2026, 8, 31)) == 0
    assert (await counters.snapshot([week]))[week] == CounterValue(1, 1, 0, 2)
    assert await counters.purge_expired(dt.date(2026, 9, 2)) == 1


async def test_two_instances_share_counters_and_racing_adds_never_pass_a_cap(
    factory: StoreFactory,
) -> None:
    """200 concurrent adds of 1 on one key capped at 50, spread over two store instances."""
    one, two = counters_of(await factory.new()), counters_of(await factory.new())
    results = await asyncio.gather(
        *(
            (one if i % 2 else two).check_and_add(
                [add("hot", 1, max_amount_minor=50), add(f"k{i % 3}", 1)]
            )
            for i in range(200)
        )
    )
    accepted = sum(r.applied for r in results)
    got = await one.snapshot(["hot", "k0", "k1", "k2"])
    assert accepted == 50 and got["hot"].amount_minor == 50
    assert sum(got[f"k{i}"].txn_count for i in range(3)) == accepted


async def test_in_memory_counters_follow_the_same_contract() -> None:
    counters = InMemoryCounters()
    assert (await counters.check_and_add([add("a", 1_000, max_amount_minor=1_000)])).applied
    assert not (
        await counters.check_and_add([add("a", 1, max_amount_minor=1_000), add("b")])
    ).applied
    assert await counters.snapshot(["a", "b"]) == {"a": CounterValue(1_000, 1, 0, 1_000)}
    await counters.apply([add("a", 1_000).negated()])
    assert (await counters.snapshot(["a"]))["a"].amount_minor == 0
