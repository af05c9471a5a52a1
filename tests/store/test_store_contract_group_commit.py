"""The store contract, part 4: the journal's hot writes issued concurrently — as
the switch issues them under load, and as both stores group-commit them (SQLite's
writer thread, PostgreSQL's ``posp.store.group_commit``) — give each caller
exactly the outcome it would have had alone.  Every test runs against
SqliteStore and PostgresStore; the last ones check PostgreSQL's batch statements."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, cast

import pytest

from posp.errors import DuplicateTransaction, StoreError, StoreUnavailable
from posp.store import rows
from posp.store.api import APPROVED, DECLINED, PENDING, REVERSED, JournalEntry, Store
from posp.store.postgres import PostgresStore, _Finish, _Insert
from tests.store.conftest import StoreFactory
from tests.store.samples import TID, entry, registered

CONCURRENT = 40


async def test_concurrent_inserts_each_get_their_own_id_and_row(store: Store) -> None:
    traces = [f"{200 + n:06d}" for n in range(CONCURRENT)]
    ids = await asyncio.gather(*(store.insert_entry(entry(t, amount_minor=int(t))) for t in traces))
    assert len(set(ids)) == CONCURRENT
    for trace, entry_id in zip(traces, ids, strict=True):
        got = await store.get_entry(entry_id)
        assert got is not None and (got.trace, got.amount_minor, got.state) == (
            trace,
            int(trace),
            PENDING,
        )


async def test_concurrent_duplicates_exactly_one_wins_per_request(factory: StoreFactory) -> None:
    """Each trace sent 4 times at once over two instances: one id, three duplicates,
    and only the winner's row exists."""
    first, second = await factory.new(), await factory.new()
    attempts = [
        store.insert_entry(entry(f"{300 + n % 10:06d}", amount_minor=k))
        for k, (n, store) in enumerate((n, s) for n in range(10) for s in (first, second) * 2)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    winners = [r for r in results if isinstance(r, int)]
    assert len(winners) == 10 and len(set(winners)) == 10
    assert all(isinstance(r, int | DuplicateTransaction) for r in results)
    for n in range(10):
        found = await first.find_by_trace(TID, "000001", f"{300 + n:06d}")
        assert found is not None and found.id in winners


async def test_concurrent_management_entries_are_all_kept(store: Store) -> None:
    sign_in = entry("000400", txn_type="sign_in", mti="0800", amount_minor=None)
    ids = await asyncio.gather(*(store.insert_entry(sign_in, dedupe=False) for _ in range(10)))
    assert len(set(ids)) == 10


async def test_one_bad_value_among_concurrent_inserts_fails_only_its_caller(store: Store) -> None:
    results = await asyncio.gather(
        *(store.insert_entry(entry(f"{500 + n:06d}")) for n in range(5)),
        store.insert_entry(entry("000599", amount_minor=2**70)),
        *(store.insert_entry(entry(f"{510 + n:06d}")) for n in range(5)),
        return_exceptions=True,
    )
    assert isinstance(results[5], StoreError)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 5)
    assert await store.find_by_trace(TID, "000001", "000599") is None


async def test_concurrent_outcomes_each_win_their_own_entry_once(store: Store) -> None:
    await registered(store)
    ids = [await store.insert_entry(entry(f"{600 + n:06d}")) for n in range(CONCURRENT)]
    assert await store.transition(ids[0], (PENDING,), REVERSED)  # taken by a 0400 first
    attempts = [
        store.finish_entry(i, (PENDING,), state=APPROVED, response_code="00", auth_code=f"{i:06d}")
        for i in ids
    ]
    attempts += [store.finish_entry(i, (PENDING,), state=DECLINED, response_code="05") for i in ids]
    won = await asyncio.gather(*attempts)
    assert won[0] is False and won[CONCURRENT] is False  # the reversed one: nobody
    for n, entry_id in enumerate(ids[1:], start=1):
        assert [won[n], won[CONCURRENT + n]].count(True) == 1
        got = await store.get_entry(entry_id)
        assert got is not None
        expected = (APPROVED, "00") if won[n] else (DECLINED, "05")
        assert (got.state, got.response_code) == expected
    reversed_entry = await store.get_entry(ids[0])
    assert reversed_entry is not None and reversed_entry.state == REVERSED
    assert reversed_entry.response_code is None


async def test_concurrent_outcomes_with_different_columns(store: Store) -> None:
    ids = [await store.insert_entry(entry(f"{700 + n:06d}")) for n in range(6)]
    won = await asyncio.gather(
        *(
            store.finish_entry(i, (PENDING,), state=APPROVED, response_code="00")
            if n % 2
            else store.finish_entry(i, (PENDING, APPROVED), state=DECLINED, card_org="VIS")
            for n, i in enumerate(ids)
        )
    )
    assert all(won)
    got = [await store.get_entry(i) for i in ids]
    assert [(g.state, g.card_org) for g in got if g] == [
        (DECLINED, "VIS") if n % 2 == 0 else (APPROVED, None) for n in range(6)
    ]


async def test_concurrent_inserts_and_outcomes_each_get_their_own_result(store: Store) -> None:
    """New entries and other entries' outcomes issued at once — what the switch does
    under load, and what PostgreSQL writes in one statement — each get the result
    they would have had alone: an id or DuplicateTransaction, True or False."""
    ids = [await store.insert_entry(entry(f"{900 + n:06d}")) for n in range(10)]
    assert await store.transition(ids[0], (PENDING,), REVERSED)  # taken by a 0400 first
    results = await asyncio.gather(
        *(store.finish_entry(i, (PENDING,), state=APPROVED, response_code="00") for i in ids),
        *(store.insert_entry(entry(f"{920 + n:06d}", amount_minor=n)) for n in range(10)),
        store.insert_entry(entry("000905")),  # the trace of an entry already there
        return_exceptions=True,
    )
    assert results[:10] == [False] + [True] * 9
    new_ids = results[10:20]
    assert all(isinstance(r, int) and not isinstance(r, bool) for r in new_ids)
    assert len(set(new_ids) | set(ids)) == 20
    assert isinstance(results[20], DuplicateTransaction)
    for n, entry_id in enumerate(ids):
        got = await store.get_entry(entry_id)
        assert got is not None
        assert got.state == (REVERSED if n == 0 else APPROVED)
    for n, new_id in enumerate(new_ids):
        got = await store.get_entry(cast(int, new_id))
        assert got is not None and (got.trace, got.amount_minor, got.state) == (
            f"{920 + n:06d}",
            n,
            PENDING,
        )
    duplicate = await store.find_by_trace(TID, "000001", "000905")
    assert duplicate is not None and duplicate.id == ids[5]


async def test_a_bad_insert_among_inserts_and_outcomes_fails_only_its_caller(
    store: Store,
) -> None:
    ids = [await store.insert_entry(entry(f"{940 + n:06d}")) for n in range(5)]
    results = await asyncio.gather(
        *(store.finish_entry(i, (PENDING,), state=DECLINED, response_code="51") for i in ids),
        *(store.insert_entry(entry(f"{950 + n:06d}")) for n in range(3)),
        store.insert_entry(entry("000959", amount_minor=2**70)),
        return_exceptions=True,
    )
    assert results[:5] == [True] * 5
    assert all(isinstance(r, int) for r in results[5:8])
    assert isinstance(results[8], StoreError)
    assert await store.find_by_trace(TID, "000001", "000959") is None
    for entry_id in ids:
        got = await store.get_entry(entry_id)
        assert got is not None and (got.state, got.response_code) == (DECLINED, "51")


async def test_inserts_with_outcomes_of_two_kinds(store: Store) -> None:
    """Outcomes of two kinds (other columns) with new entries: each result is right."""
    ids = [await store.insert_entry(entry(f"{960 + n:06d}")) for n in range(4)]
    results = await asyncio.gather(
        store.finish_entry(ids[0], (PENDING,), state=APPROVED, response_code="00"),
        store.finish_entry(ids[1], (PENDING,), state=DECLINED, card_org="VIS"),
        store.update_entry(ids[2], card_org="MCC"),
        *(store.insert_entry(entry(f"{970 + n:06d}")) for n in range(3)),
    )
    assert results[:2] == [True, True] and results[2] is None
    assert all(isinstance(r, int) for r in results[3:])
    got = [await store.get_entry(i) for i in ids[:3]]
    assert [(g.state, g.card_org) for g in got if g] == [
        (APPROVED, None),
        (DECLINED, "VIS"),
        (PENDING, "MCC"),
    ]


async def test_two_instances_racing_inserts_and_outcomes(factory: StoreFactory) -> None:
    """Two instances at once, each inserting new entries (some the same as the
    other's) and finishing entries both compete for — on PostgreSQL in combined
    statements that lock keys and rows across instances (a deadlock is retried
    apart).  Every trace is journaled once, every entry is finished by exactly
    one caller, and the rows say what the winners were told."""
    first, second = await factory.new(), await factory.new()
    ids = [await first.insert_entry(entry(f"{100 + n:06d}")) for n in range(12)]

    def work(store: Store, code: str) -> list[Any]:
        return [
            *(store.finish_entry(i, (PENDING,), state=APPROVED, response_code=code) for i in ids),
            *(store.insert_entry(entry(f"{200 + n:06d}", amount_minor=n)) for n in range(12)),
        ]

    results = await asyncio.gather(*work(first, "00"), *work(second, "01"), return_exceptions=True)
    won_first, new_first = results[:12], results[12:24]
    won_second, new_second = results[24:36], results[36:]
    for n, entry_id in enumerate(ids):
        assert [won_first[n], won_second[n]].count(True) == 1, (n, won_first[n], won_second[n])
        got = await first.get_entry(entry_id)
        assert got is not None and got.state == APPROVED
        assert got.response_code == ("00" if won_first[n] else "01")
    for n in range(12):
        pair = [new_first[n], new_second[n]]
        winners = [r for r in pair if isinstance(r, int)]
        losers = [r for r in pair if not isinstance(r, int)]
        assert len(winners) == 1 and isinstance(losers[0], DuplicateTransaction)
        found = await first.find_by_trace(TID, "000001", f"{200 + n:06d}")
        assert found is not None and found.id == winners[0] and found.amount_minor == n


# --- PostgreSQL's batch statements ---------------------------------------------------


async def test_postgres_batches_concurrent_writes_into_fewer_commits(
    factory: StoreFactory,
) -> None:
    if factory.kind != "postgres":
        pytest.skip("PostgreSQL's group commit")
    store = await factory.new()
    assert isinstance(store, PostgresStore)
    ids = await asyncio.gather(
        *(store.insert_entry(entry(f"{800 + n:06d}")) for n in range(CONCURRENT))
    )
    inserted = store._journal.batches
    assert store._journal.items == CONCURRENT and inserted < CONCURRENT
    await asyncio.gather(
        *(store.finish_entry(i, (PENDING,), state=APPROVED, response_code="00") for i in ids)
    )
    assert store._journal.items == 2 * CONCURRENT
    assert store._journal.batches - inserted < CONCURRENT


async def test_postgres_batch_arrays_have_the_journal_column_types(
    factory: StoreFactory,
) -> None:
    """The batch statements bind one typed array per journal column: the types they
    name must be the table's (a column added later and not TEXT must be listed);
    generated columns (migration 0037) are never written, so never bound."""
    if factory.kind != "postgres":
        pytest.skip("PostgreSQL's batch statements")
    from posp.store.postgres import _journal_type

    store = await factory.new()
    assert isinstance(store, PostgresStore)
    found = await store._read(
        "columns",
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'journal'"
        " AND is_generated = 'NEVER'",
    )
    names = {"bigint": "bigint", "text": "text", "boolean": "boolean"}
    names["timestamp with time zone"] = "timestamptz"
    for row in found:
        assert _journal_type(row["column_name"]) == names[row["data_type"]], row["column_name"]


async def test_postgres_writes_inserts_and_outcomes_in_one_statement(
    factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued together, new entries and outcomes of one kind share one statement
    and one commit, and each caller gets its own row's result."""
    if factory.kind != "postgres":
        pytest.skip("PostgreSQL's combined batch statement")
    store = await factory.new()
    assert isinstance(store, PostgresStore)
    combined: list[tuple[int, int]] = []
    original = store._insert_and_finish

    async def counted(batch: Any, inserts: list[int], finishes: list[int]) -> Any:
        combined.append((len(inserts), len(finishes)))
        return await original(batch, inserts, finishes)

    monkeypatch.setattr(store, "_insert_and_finish", counted)
    ids = await asyncio.gather(*(store.insert_entry(entry(f"{n:06d}")) for n in range(1, 11)))
    assert combined == []  # inserts alone: the insert batch
    before = store._journal.batches
    results = await asyncio.gather(
        *(store.finish_entry(i, (PENDING,), state=APPROVED, response_code="00") for i in ids),
        *(store.insert_entry(entry(f"{n:06d}", amount_minor=n)) for n in range(11, 21)),
    )
    assert results[:10] == [True] * 10
    assert store._journal.batches - before < 20
    assert combined and all(inserts and finishes for inserts, finishes in combined)
    for n, new_id in enumerate(results[10:], start=11):
        got = await store.get_entry(new_id)
        assert got is not None and (got.trace, got.amount_minor) == (f"{n:06d}", n)


async def test_postgres_combines_the_inserts_with_the_largest_kind_of_outcome(
    factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outcomes of three kinds (one without a compare-and-set) with new entries:
    the inserts go with the largest kind, the other kinds in statements of their
    own; every result is right."""
    if factory.kind != "postgres":
        pytest.skip("PostgreSQL's combined batch statement")
    store = await factory.new()
    assert isinstance(store, PostgresStore)
    ids = [await store.insert_entry(entry(f"{n:06d}")) for n in range(1, 7)]
    batch: list[Any] = [
        _Finish(ids[0], (PENDING,), ("state",), [DECLINED]),
        _Insert(_insert_values(entry("000010"))),
        _Finish(ids[1], None, ("card_org",), ["VIS"]),
        _Finish(ids[2], None, ("card_org",), ["MCC"]),
        _Finish(ids[3], None, ("card_org",), ["JCB"]),
        _Insert(_insert_values(entry("000003"))),  # a duplicate of an entry there
        _Finish(ids[4], (APPROVED,), ("state",), [DECLINED]),  # not approved: no change
        _Finish(ids[5], (PENDING,), ("state", "response_code"), [APPROVED, "00"]),
    ]
    combined: list[list[int]] = []
    original = store._insert_and_finish

    async def counted(batch: Any, inserts: list[int], finishes: list[int]) -> Any:
        combined.append(finishes)
        return await original(batch, inserts, finishes)

    monkeypatch.setattr(store, "_insert_and_finish", counted)
    outcomes = await store._journal_batch(batch)
    assert combined == [[2, 3, 4]]  # the three update_entry of card_org
    assert [outcomes[i] for i in (0, 2, 3, 4, 6, 7)] == [1, 1, 1, 1, 0, 1]
    assert isinstance(outcomes[5], DuplicateTransaction)
    found = await store.find_by_trace(TID, "000001", "000010")
    assert found is not None and found.id == outcomes[1]
    got = [await store.get_entry(i) for i in ids]
    assert [(g.state, g.card_org, g.response_code) for g in got if g] == [
        (DECLINED, None, None),
        (PENDING, "VIS", None),
        (PENDING, "MCC", None),
        (PENDING, "JCB", None),
        (PENDING, None, None),
        (APPROVED, None, "00"),
    ]


@pytest.mark.parametrize("error", [StoreUnavailable, StoreError, RuntimeError])
async def test_postgres_combined_statement_failing(
    factory: StoreFactory, monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    """The combined statement failing.  A lost connection (StoreUnavailable) is
    its callers' error: nothing of it is known to be committed.  A statement
    error (StoreError: nothing of it committed) writes its inserts and outcomes
    apart, each caller getting its own result.  Anything else (a bug) is its
    callers' error and nothing is written again.  In every case the callers of
    another part — here an outcome of another kind — get their own committed
    result."""
    if factory.kind != "postgres":
        pytest.skip("PostgreSQL's combined batch statement")
    store = await factory.new()
    assert isinstance(store, PostgresStore)
    ids = [await store.insert_entry(entry(f"{n:06d}")) for n in range(1, 5)]

    async def failing(batch: Any, inserts: list[int], finishes: list[int]) -> Any:
        raise error("insert_entry: failed in this test")

    monkeypatch.setattr(store, "_insert_and_finish", failing)
    batch: list[Any] = [
        _Insert(_insert_values(entry("000010"))),
        *(_Finish(i, (PENDING,), ("state", "response_code"), [APPROVED, "00"]) for i in ids[:3]),
        _Insert(_insert_values(entry("000011"))),
        _Finish(ids[3], None, ("card_org",), ["VIS"]),  # another kind: its own statement
    ]
    outcomes = await store._journal_batch(batch)
    assert outcomes[5] == 1
    other = await store.get_entry(ids[3])
    assert other is not None and other.card_org == "VIS"
    if error is not StoreError:
        assert all(isinstance(outcomes[i], error) for i in range(5))
        assert await store.find_by_trace(TID, "000001", "000010") is None
        for entry_id in ids[:3]:
            got = await store.get_entry(entry_id)
            assert got is not None and got.state == PENDING
        return
    assert outcomes[1:4] == [1, 1, 1]
    for index, trace in ((0, "000010"), (4, "000011")):
        found = await store.find_by_trace(TID, "000001", trace)
        assert found is not None and found.id == outcomes[index]
    for entry_id in ids[:3]:
        got = await store.get_entry(entry_id)
        assert got is not None and got.state == APPROVED


def _insert_values(journal_entry: JournalEntry) -> list[Any]:
    """The row's values as ``SqlStore.insert_entry`` binds them."""
    values = rows.entry_insert_values(journal_entry, dedupe=True, default_node_id="")
    return [rows.as_utc(v) if isinstance(v, dt.datetime) else v for v in values]
