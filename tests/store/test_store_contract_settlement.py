"""The store contract, part 2: store-and-forward, settlement and batch upload,
sequences and startup — run unchanged against SqliteStore and PostgresStore."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets

import asyncpg
import pytest

from posp.errors import StoreError
from posp.store.api import (
    APPROVED,
    DECLINED,
    PENDING,
    REVERSED,
    VOIDED,
    BatchTotals,
    Merchant,
    SafItem,
    Settlement,
    Store,
    UploadedRecord,
)
from posp.store.postgres import PostgresStore
from tests.store.conftest import StoreFactory, drop_schema
from tests.store.samples import MID, TID, UTC, entry, registered

# --- store-and-forward -----------------------------------------------------------


async def test_saf_enqueue_is_idempotent_per_entry(store: Store) -> None:
    entry_id = await store.insert_entry(entry("000040"))
    first = await store.enqueue_saf(SafItem(entry_id, b"\x01payload"))
    again = await store.enqueue_saf(SafItem(entry_id, b"other payload"))
    assert first == again
    assert await store.saf_depth() == 1
    with pytest.raises(StoreError, match="unknown"):
        await store.enqueue_saf(SafItem(entry_id + 999, b"x"))


async def test_saf_due_lease_reschedule_and_complete(store: Store) -> None:
    now = dt.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    due_id = await store.insert_entry(entry("000041"))
    later_id = await store.insert_entry(entry("000042"))
    item_id = await store.enqueue_saf(SafItem(due_id, b"\x00\x04\x20", next_attempt_at=now))
    await store.enqueue_saf(
        SafItem(later_id, b"later", next_attempt_at=now + dt.timedelta(hours=1))
    )

    due = await store.due_saf(now)
    assert [(i.id, i.entry_id, i.payload, i.attempts) for i in due] == [
        (item_id, due_id, b"\x00\x04\x20", 0)
    ]
    assert await store.due_saf(now) == []  # leased to the first poller
    assert [i.id for i in await store.due_saf(now + dt.timedelta(seconds=31))] == [item_id]

    await store.reschedule_saf(item_id, now + dt.timedelta(minutes=5))
    assert await store.due_saf(now + dt.timedelta(minutes=4)) == []
    retried = await store.due_saf(now + dt.timedelta(minutes=5))
    assert [(i.id, i.attempts) for i in retried] == [(item_id, 1)]

    await store.complete_saf(item_id)
    assert await store.saf_depth() == 1
    assert [i.entry_id for i in await store.due_saf(now + dt.timedelta(hours=2))] == [later_id]


async def test_saf_respects_the_limit_and_due_order(store: Store) -> None:
    now = dt.datetime.now(UTC)
    for n in range(5):
        entry_id = await store.insert_entry(entry(f"00005{n}"))
        await store.enqueue_saf(SafItem(entry_id, b"p", next_attempt_at=now - dt.timedelta(n)))
    first = await store.due_saf(now, limit=2)
    rest = await store.due_saf(now, limit=10)
    assert len(first) == 2 and len(rest) == 3
    assert {i.id for i in first}.isdisjoint({i.id for i in rest})


async def test_two_instances_polling_saf_get_disjoint_items(factory: StoreFactory) -> None:
    first, second = await factory.new(), await factory.new()
    now = dt.datetime.now(UTC)
    for n in range(20):
        entry_id = await first.insert_entry(entry(f"00006{n:02d}"))
        await first.enqueue_saf(SafItem(entry_id, b"p", next_attempt_at=now))
    polls = await asyncio.gather(*(s.due_saf(now, limit=7) for s in [first, second] * 2))
    taken = [item.id for poll in polls for item in poll]
    assert len(taken) == len(set(taken))


async def test_saf_queue_survives_close_and_reopen(factory: StoreFactory) -> None:
    store = await factory.new()
    entry_id = await store.insert_entry(entry("000070"))
    await store.enqueue_saf(SafItem(entry_id, b"durable 0420"))
    await store.close()
    reopened = await factory.new()
    assert await reopened.saf_depth() == 1
    due = await reopened.due_saf(dt.datetime.now(UTC) + dt.timedelta(seconds=1))
    assert [(i.entry_id, i.payload) for i in due] == [(entry_id, b"durable 0420")]


# --- settlement and batch upload ---------------------------------------------------


async def journal_mixed_batch(store: Store) -> dict[str, int]:
    """A batch exercising every settlement rule; returns ids by trace."""
    rows = [
        ("000101", dict(state=APPROVED, amount_minor=1000)),  # domestic debit
        ("000102", dict(state=VOIDED, amount_minor=2000)),
        ("000103", dict(state=REVERSED, amount_minor=3000)),
        ("000104", dict(state=DECLINED, amount_minor=4000)),
        ("000105", dict(state=APPROVED, amount_minor=5000, card_class="01")),  # foreign debit
        ("000106", dict(state=APPROVED, amount_minor=600, txn_type="completion")),  # debit
        ("000107", dict(state=APPROVED, amount_minor=7000, txn_type="preauth")),
        ("000108", dict(state=APPROVED, amount_minor=800, txn_type="refund")),  # credit
        ("000109", dict(state=DECLINED, amount_minor=900, txn_type="refund")),
        ("000110", dict(state=APPROVED, amount_minor=1000, refunded_minor=500)),  # debit
        ("000111", dict(state=APPROVED, amount_minor=250, txn_type="refund", card_class="01")),
        ("000112", dict(state=APPROVED, amount_minor=2000, txn_type="void")),
        ("000113", dict(state=PENDING, amount_minor=70)),
        ("000114", dict(state="timed_out", amount_minor=80)),
        ("000101", dict(state=APPROVED, amount_minor=1000, direction="reversal")),
        ("000115", dict(state=APPROVED, amount_minor=99, batch="000002")),
        ("000116", dict(state=APPROVED, amount_minor=99, terminal_id="10000009")),
    ]
    ids: dict[str, int] = {}
    for trace, changes in rows:
        ids.setdefault(trace, await store.insert_entry(entry(trace, **changes)))
    return ids


async def test_batch_totals_follow_the_settlement_rules(store: Store) -> None:
    await journal_mixed_batch(store)
    domestic, foreign = await store.batch_totals(TID, "000001")
    assert domestic == BatchTotals(
        debit_amount_minor=2600, debit_count=3, credit_amount_minor=800, credit_count=1
    )
    assert foreign == BatchTotals(
        debit_amount_minor=5000, debit_count=1, credit_amount_minor=250, credit_count=1
    )
    assert await store.batch_totals(TID, "000009") == (BatchTotals(), BatchTotals())


async def test_find_debit_or_credit_only_returns_settling_entries(store: Store) -> None:
    ids = await journal_mixed_batch(store)
    assert (await store.find_debit_or_credit(TID, "000001", "000101")).id == ids["000101"]  # type: ignore[union-attr]
    assert (await store.find_debit_or_credit(TID, "000001", "000108")).id == ids["000108"]  # type: ignore[union-attr]
    for trace in ("000102", "000103", "000104", "000107", "000112", "000999"):
        assert await store.find_debit_or_credit(TID, "000001", trace) is None, trace


def settlement(batch: str = "000001", **changes: object) -> Settlement:
    base = Settlement(
        terminal_id=TID,
        merchant_id=MID,
        batch=batch,
        domestic=BatchTotals(2600, 3, 800, 1),
        foreign=BatchTotals(5000, 1, 250, 1),
        terminal_domestic=BatchTotals(2600, 3, 800, 1),
        terminal_foreign=BatchTotals(5000, 1, 0, 0),
        foreign_balanced=False,
        settled_at=dt.datetime(2025, 6, 1, 23, 59, 59, tzinfo=UTC),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_record_settlement_replaces_and_lists_by_date(store: Store) -> None:
    first = await store.record_settlement(settlement())
    replaced = await store.record_settlement(settlement(upload_records=7, upload_complete=True))
    next_day = dt.datetime(2025, 6, 2, 0, 0, tzinfo=UTC)
    await store.record_settlement(settlement("000002", settled_at=next_day))
    assert replaced == first
    got = await store.get_settlement(TID, "000001")
    assert got is not None and got.id == first
    assert got == settlement(upload_records=7, upload_complete=True, id=first)
    assert await store.get_settlement(TID, "000003") is None
    june_1 = await store.list_settlements(date=dt.date(2025, 6, 1))
    assert [s.batch for s in june_1] == ["000001"]
    assert [s.batch for s in await store.list_settlements(terminal_id=TID)] == ["000001", "000002"]
    assert await store.list_settlements(terminal_id="nope") == []


async def test_list_settlements_by_date_uses_the_local_business_day(store: Store) -> None:
    """23:30 UTC on June 1 is June 2 at UTC+8; a negative offset moves the day back."""
    late = dt.datetime(2025, 6, 1, 23, 30, tzinfo=UTC)
    await store.record_settlement(settlement("000007", settled_at=late))

    async def batches(day: dt.date, offset_h: float) -> list[str]:
        found = await store.list_settlements(date=day, utc_offset_hours=offset_h)
        return [s.batch for s in found]

    assert await batches(dt.date(2025, 6, 2), 8.0) == ["000007"]
    assert await batches(dt.date(2025, 6, 1), 8.0) == []
    assert await batches(dt.date(2025, 6, 1), 0.0) == ["000007"]
    assert await batches(dt.date(2025, 6, 1), -5.0) == ["000007"]
    assert await batches(dt.date(2025, 6, 2), 0.5) == ["000007"]


async def test_record_upload_is_idempotent_per_trace(store: Store) -> None:
    record = UploadedRecord(TID, "000001", "000101", "00", "h1", 1000, True)
    assert await store.record_upload(record) is True
    assert await store.record_upload(record) is False
    bad = UploadedRecord(TID, "000001", "000099", "01", "h2", 5, False, "no such trace")
    assert await store.record_upload(bad) is True
    assert await store.list_uploads(TID, "000001") == [bad, record]  # by trace
    assert await store.list_uploads(TID, "000002") == []


async def test_close_batch_is_compare_and_set(store: Store) -> None:
    await registered(store)
    assert await store.close_batch(TID, "000001", "000002") is True
    assert await store.close_batch(TID, "000001", "000002") is False
    assert (await store.get_terminal(TID)).batch == "000002"  # type: ignore[union-attr]
    assert await store.close_batch("nope", "000001", "000002") is False


async def test_list_batches_reports_counts_status_settlement_and_uploads(store: Store) -> None:
    await registered(store)
    await journal_mixed_batch(store)
    await store.record_settlement(settlement())
    await store.record_upload(UploadedRecord(TID, "000001", "000101", "00", "h1", 1000, True))
    await store.record_upload(UploadedRecord(TID, "000001", "000102", "00", "h1", 2000, False))
    await store.close_batch(TID, "000001", "000003")
    batches = {b["batch"]: b for b in await store.list_batches(TID)}
    assert set(batches) == {"000001", "000002", "000003"}
    assert batches["000001"] == {
        "terminal_id": TID, "merchant_id": MID, "batch": "000001", "status": "closed",
        "txn_count": 14, "debit_count": 4, "debit_amount_minor": 7600, "credit_count": 2,
        "credit_amount_minor": 1050, "settled": True, "balanced": False,
        "upload_records": 2, "upload_mismatches": 1,
    }  # fmt: skip
    assert batches["000003"]["status"] == "open" and batches["000003"]["txn_count"] == 0
    assert batches["000002"]["settled"] is False and batches["000002"]["balanced"] is None
    everyone = await store.list_batches()
    assert {(b["terminal_id"], b["batch"]) for b in everyone} >= {("10000009", "000001")}


# --- sequences ----------------------------------------------------------------------


async def test_next_sequence_is_monotonic_and_unique_across_instances(
    factory: StoreFactory,
) -> None:
    first, second = await factory.new(), await factory.new()
    assert await first.next_sequence("rrn") == 1
    drawn = await asyncio.gather(*(s.next_sequence("rrn") for s in [first, second] * 20))
    assert sorted(drawn) == list(range(2, 42))
    assert await second.next_sequence("stan") == 1
    mine = [await first.next_sequence("rrn") for _ in range(3)]
    assert mine == sorted(mine) and mine[0] == 42
    odd_names = [await s.next_sequence("Net-STAN.1") for s in (first, second)]
    assert odd_names == [1, 2]


async def test_a_sequences_first_use_from_many_callers_at_once_is_safe(
    factory: StoreFactory,
) -> None:
    """Two instances drawing a new sequence's first numbers at the same moment (the
    sequence is created on first use): every caller gets a number, all distinct."""
    first, second = await factory.new(), await factory.new()
    drawn = await asyncio.gather(*(s.next_sequence("fresh") for s in [first, second] * 100))
    assert sorted(drawn) == list(range(1, 201))


@pytest.mark.postgres
@pytest.mark.parametrize("error", ["UniqueViolationError", "DuplicateTableError"])
async def test_a_sequence_created_by_a_concurrent_caller_is_drawn_from(
    pg_dsn: str, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent ``CREATE SEQUENCE IF NOT EXISTS`` can fail with either error
    when another session creates the sequence at the same moment (seen 3 times in
    1,140 racing creates for DuplicateTableError): the draw still succeeds."""
    factory = StoreFactory("postgres", dsn=pg_dsn, schema=f"t_{secrets.token_hex(6)}")
    try:
        store = await factory.new()
        assert isinstance(store, PostgresStore)
        execute = asyncpg.pool.Pool.execute

        async def lost_the_race(pool: asyncpg.pool.Pool, sql: str, *args: object) -> str:
            await execute(pool, sql, *args)  # the other caller's CREATE
            raise getattr(asyncpg, error)("relation already exists")

        monkeypatch.setattr(asyncpg.pool.Pool, "execute", lost_the_race)
        assert await store.next_sequence("raced") == 1
    finally:
        await factory.close_all()
        await drop_schema(pg_dsn, factory.schema)


async def test_open_is_idempotent_and_concurrent_opens_are_safe(factory: StoreFactory) -> None:
    """Two instances starting at once on a fresh database both come up."""
    a, b = factory.make(), factory.make()
    await asyncio.gather(a.open(), b.open())
    factory.opened += [a, b]
    await a.open()
    await a.add_merchant(Merchant(MID, "x", "5411"))
    assert await b.get_merchant(MID) is not None
