"""The store contract: every test runs unchanged against SqliteStore and
PostgresStore (see conftest.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest

from posp.errors import DuplicateTransaction, StoreError
from posp.store.api import (
    APPROVED,
    COMPLETED,
    DECLINED,
    PENDING,
    REVERSED,
    VOIDED,
    BatchTotals,
    JournalEntry,
    Merchant,
    SafItem,
    Settlement,
    Store,
    Terminal,
    UploadedRecord,
)
from tests.store.conftest import StoreFactory

UTC = dt.UTC
MID = "898100000000001"
TID = "10000001"


def entry(trace: str, **changes: object) -> JournalEntry:
    base = JournalEntry(
        terminal_id=TID,
        merchant_id=MID,
        batch="000001",
        trace=trace,
        txn_type="purchase",
        mti="0200",
        processing_code="000000",
        amount_minor=1000,
        pan_masked="622588******0001",
        pan_hash="h1",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def registered(store: Store) -> Store:
    await store.add_merchant(Merchant(MID, "Demo shop", "5411"))
    await store.add_terminal(Terminal(TID, MID))
    return store


# --- registry ---------------------------------------------------------------------


async def test_merchant_crud_and_status(store: Store) -> None:
    await store.add_merchant(Merchant(MID, "Demo shop", "5411"))
    await store.add_merchant(Merchant("898100000000002", "Other", "5812"))
    got = await store.get_merchant(MID)
    assert got is not None and (got.name, got.category_code, got.status) == (
        "Demo shop",
        "5411",
        "active",
    )
    assert got.created_at is not None and got.created_at.tzinfo is not None
    assert [m.merchant_id for m in await store.list_merchants()] == [MID, "898100000000002"]
    assert await store.set_merchant_status(MID, "disabled") is True
    assert (await store.get_merchant(MID)).status == "disabled"  # type: ignore[union-attr]
    assert await store.set_merchant_status("nope", "disabled") is False
    assert await store.get_merchant("nope") is None


async def test_adding_an_existing_merchant_raises_store_error(store: Store) -> None:
    await store.add_merchant(Merchant(MID, "Demo shop", "5411"))
    with pytest.raises(StoreError, match="already exists"):
        await store.add_merchant(Merchant(MID, "Again", "5411"))


async def test_terminal_crud_status_and_listing_by_merchant(store: Store) -> None:
    await registered(store)
    await store.add_merchant(Merchant("898100000000002", "Other", "5812"))
    await store.add_terminal(Terminal("20000001", "898100000000002", device_serial="SN1"))
    got = await store.get_terminal(TID)
    assert got is not None and got.merchant_id == MID and got.batch == "000001"
    assert [t.terminal_id for t in await store.list_terminals()] == [TID, "20000001"]
    assert [t.terminal_id for t in await store.list_terminals(MID)] == [TID]
    assert await store.set_terminal_status(TID, "disabled") is True
    assert (await store.get_terminal(TID)).status == "disabled"  # type: ignore[union-attr]
    assert await store.set_terminal_status("nope", "active") is False
    assert (await store.get_terminal("20000001")).device_serial == "SN1"  # type: ignore[union-attr]


async def test_adding_a_terminal_twice_or_for_an_unknown_merchant_raises(store: Store) -> None:
    await registered(store)
    with pytest.raises(StoreError, match="already exists"):
        await store.add_terminal(Terminal(TID, MID))
    with pytest.raises(StoreError, match="unknown"):
        await store.add_terminal(Terminal("30000001", "999999999999999"))


async def test_replacing_the_tmk_clears_working_keys(store: Store) -> None:
    await registered(store)
    now = dt.datetime.now(UTC)
    await store.set_working_keys(TID, "UTPK", "TAK", "UTDK", now)
    assert await store.set_terminal_tmk(TID, "UNEWTMK", "ABCDEF") is True
    got = await store.get_terminal(TID)
    assert got is not None and (got.tmk_lmk, got.tmk_kcv) == ("UNEWTMK", "ABCDEF")
    assert (got.tpk_lmk, got.tak_lmk, got.tdk_lmk, got.keys_generated_at) == (None,) * 4
    assert await store.set_terminal_tmk("nope", "U1", "000000") is False


async def test_working_keys_set_clear_and_count_signed_in(store: Store) -> None:
    await registered(store)
    await store.add_terminal(Terminal("10000002", MID))
    t0 = dt.datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    await store.set_working_keys(TID, "UTPK", "TAK", None, t0)
    await store.set_working_keys("10000002", "UTPK2", "TAK2", "UTDK2", t0 + dt.timedelta(hours=1))
    got = await store.get_terminal(TID)
    assert got is not None and (got.tpk_lmk, got.tak_lmk, got.tdk_lmk) == ("UTPK", "TAK", None)
    assert got.keys_generated_at == t0
    assert await store.count_signed_in(t0) == 2
    assert await store.count_signed_in(t0 + dt.timedelta(microseconds=1)) == 1
    await store.clear_working_keys("10000002")
    assert await store.count_signed_in(t0) == 1
    assert (await store.get_terminal("10000002")).tpk_lmk is None  # type: ignore[union-attr]


# --- journal ------------------------------------------------------------------------


async def test_duplicate_request_raises_but_reversal_with_same_trace_does_not(store: Store) -> None:
    first = await store.insert_entry(entry("000001"))
    with pytest.raises(DuplicateTransaction) as caught:
        await store.insert_entry(entry("000001", amount_minor=5))
    assert "622588" not in str(caught.value)
    reversal = await store.insert_entry(entry("000001", direction="reversal", txn_type="reversal"))
    assert reversal != first
    with pytest.raises(DuplicateTransaction):
        await store.insert_entry(entry("000001", direction="reversal", txn_type="reversal"))
    other_batch = await store.insert_entry(entry("000001", batch="000002"))
    assert other_batch not in (first, reversal)


async def test_management_entries_are_not_deduplicated(store: Store) -> None:
    sign_in = entry("000009", txn_type="sign_in", mti="0800", amount_minor=None)
    a = await store.insert_entry(sign_in, dedupe=False)
    b = await store.insert_entry(sign_in, dedupe=False)
    assert a != b
    await store.insert_entry(entry("000009"))  # a financial entry may still take the trace
    found = await store.find_by_trace(TID, "000001", "000009")
    assert found is not None and found.txn_type == "purchase"


async def test_update_and_get_round_trip_every_field(store: Store) -> None:
    entry_id = await store.insert_entry(entry("000002", node_id="node-a"))
    await store.update_entry(
        entry_id, state=APPROVED, response_code="00", rrn="000000000001", auth_code="123456",
        local_date="0102", local_time="030405", settlement_date="0102", network_stan="000777",
        network_f7="0102030405", card_org="CUP",
    )  # fmt: skip
    got = await store.get_entry(entry_id)
    assert got is not None and got.id == entry_id
    assert (got.state, got.response_code, got.rrn, got.auth_code) == (
        APPROVED, "00", "000000000001", "123456",
    )  # fmt: skip
    assert (got.local_date, got.local_time, got.network_stan, got.card_org) == (
        "0102", "030405", "000777", "CUP",
    )  # fmt: skip
    assert got.node_id == "node-a" and got.amount_minor == 1000 and got.pan_hash == "h1"
    assert got.created_at is not None and got.created_at.utcoffset() == dt.timedelta(0)
    assert await store.get_entry(entry_id + 1000) is None


async def test_update_entry_refuses_unknown_or_read_only_fields(store: Store) -> None:
    entry_id = await store.insert_entry(entry("000003"))
    with pytest.raises(StoreError, match="bogus"):
        await store.update_entry(entry_id, bogus=1)
    with pytest.raises(StoreError, match="id"):
        await store.update_entry(entry_id, id=99)
    await store.update_entry(entry_id)  # nothing to change is fine
    assert (await store.get_entry(entry_id)).state == PENDING  # type: ignore[union-attr]


async def test_a_value_the_database_cannot_hold_raises_store_error(store: Store) -> None:
    with pytest.raises(StoreError, match="insert_entry"):
        await store.insert_entry(entry("000004", amount_minor=2**70))
    assert await store.find_by_trace(TID, "000001", "000004") is None


async def test_find_by_rrn_prefers_the_financial_entry(store: Store) -> None:
    purchase = await store.insert_entry(entry("000005", rrn="R5"))
    sign_in = entry("000006", txn_type="sign_in", mti="0800", rrn="R5")
    await store.insert_entry(sign_in, dedupe=False)
    assert (await store.find_by_rrn("R5")).id == purchase  # type: ignore[union-attr]


async def test_find_by_trace_rrn_and_preauth(store: Store) -> None:
    purchase = await store.insert_entry(entry("000010", rrn="R1", local_date="0101"))
    await store.insert_entry(entry("000010", direction="reversal", txn_type="reversal", rrn="R1"))
    pre = await store.insert_entry(
        entry("000011", txn_type="preauth", mti="0100", auth_code="A1", local_date="0101")
    )
    await store.update_entry(pre, state=APPROVED)
    declined_pre = await store.insert_entry(entry("000012", txn_type="preauth", auth_code="A2"))
    await store.update_entry(declined_pre, state=DECLINED)

    assert (await store.find_by_trace(TID, "000001", "000010")).id == purchase  # type: ignore[union-attr]
    rev = await store.find_by_trace(TID, "000001", "000010", "reversal")
    assert rev is not None and rev.direction == "reversal"
    assert await store.find_by_trace(TID, "000002", "000010") is None

    assert (await store.find_by_rrn("R1")).id == purchase  # type: ignore[union-attr]
    assert (await store.find_by_rrn("R1", local_date="0101", merchant_id=MID)) is not None
    assert await store.find_by_rrn("R1", local_date="0202") is None
    assert await store.find_by_rrn("R1", merchant_id="other") is None

    found = await store.find_preauth(MID, "A1", "0101", "h1")
    assert found is not None and found.id == pre
    assert (await store.find_preauth(MID, "A1", None, None)) is not None
    assert await store.find_preauth(MID, "A1", "0101", "other-card") is None
    assert await store.find_preauth(MID, "A2", None, None) is None  # declined
    await store.update_entry(pre, state=COMPLETED)
    assert await store.find_preauth(MID, "A1", None, None) is None  # consumed


async def test_transition_is_exactly_once_under_concurrency(factory: StoreFactory) -> None:
    """10 concurrent voids over two instances: exactly one wins."""
    first, second = await factory.new(), await factory.new()
    entry_id = await first.insert_entry(entry("000020", state=APPROVED))
    stores = [first, second] * 5
    won = await asyncio.gather(*(s.transition(entry_id, (APPROVED,), VOIDED) for s in stores))
    assert sorted(won) == [False] * 9 + [True]
    assert (await first.get_entry(entry_id)).state == VOIDED  # type: ignore[union-attr]
    assert await first.transition(entry_id, (), REVERSED) is False


async def test_add_refunded_never_exceeds_the_limit_under_concurrency(
    factory: StoreFactory,
) -> None:
    first, second = await factory.new(), await factory.new()
    entry_id = await first.insert_entry(entry("000021", state=APPROVED, amount_minor=1000))
    stores = [first, second] * 5
    won = await asyncio.gather(*(s.add_refunded(entry_id, 300, 1000) for s in stores))
    assert won.count(True) == 3
    assert (await first.get_entry(entry_id)).refunded_minor == 900  # type: ignore[union-attr]
    assert await first.add_refunded(entry_id, 100, 1000) is True
    assert await first.add_refunded(entry_id, 1, 1000) is False
    assert await first.add_refunded(entry_id, -1000, 1000) is True  # a released reservation
    assert await first.add_refunded(entry_id, -1, 1000) is False  # never below zero


async def test_two_instances_racing_on_one_request_exactly_one_wins(factory: StoreFactory) -> None:
    first, second = await factory.new(), await factory.new()
    attempts = [s.insert_entry(entry("000030")) for s in [first, second] * 4]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    ids = [o for o in outcomes if isinstance(o, int)]
    assert len(ids) == 1
    assert all(isinstance(o, DuplicateTransaction) for o in outcomes if not isinstance(o, int))


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


async def test_open_is_idempotent_and_concurrent_opens_are_safe(factory: StoreFactory) -> None:
    """Two instances starting at once on a fresh database both come up."""
    a, b = factory.make(), factory.make()
    await asyncio.gather(a.open(), b.open())
    factory.opened += [a, b]
    await a.open()
    await a.add_merchant(Merchant(MID, "x", "5411"))
    assert await b.get_merchant(MID) is not None
