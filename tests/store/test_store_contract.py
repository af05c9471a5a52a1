"""The store contract, part 1: registry and journal — every test runs unchanged
against SqliteStore and PostgresStore (see conftest.py; part 2 is
test_store_contract_settlement.py)."""

from __future__ import annotations

import asyncio
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
    Merchant,
    Store,
    Terminal,
)
from tests.store.conftest import StoreFactory
from tests.store.samples import MID, TID, UTC, entry, registered

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


async def test_a_refund_reservation_needs_the_original_still_approved(store: Store) -> None:
    """A void recorded between a refund's lookup and its reservation refuses the
    reservation in the same statement; a reservation made before is still released."""
    entry_id = await store.insert_entry(entry("000022", state=APPROVED, amount_minor=1000))
    assert await store.add_refunded(entry_id, 400, 1000) is True
    assert await store.transition(entry_id, (APPROVED,), VOIDED) is True
    assert await store.add_refunded(entry_id, 100, 1000) is False
    assert await store.add_refunded(entry_id, -400, 1000) is True  # the release
    assert (await store.get_entry(entry_id)).refunded_minor == 0  # type: ignore[union-attr]


async def test_a_reservation_lives_on_the_entry_that_made_it_and_goes_back_once(
    store: Store,
) -> None:
    """``reserve_refunded`` records the reservation on the refund's (or void's) own
    entry in the same transaction; ``release_reservation`` gives it back once,
    whoever calls it, and only the amount the entry still carries."""
    original = await store.insert_entry(entry("000023", state=APPROVED, amount_minor=1000))
    refund = await store.insert_entry(entry("000024", amount_minor=600))
    assert await store.reserve_refunded(original, 600, 1000, refund) is True
    kept = await store.get_entry(refund)
    assert kept is not None and kept.reserved_minor == 600 and kept.original_id == original
    other = await store.insert_entry(entry("000025", amount_minor=500))
    assert await store.reserve_refunded(original, 500, 1000, other) is False  # over the limit
    refused = await store.get_entry(other)
    assert refused is not None and refused.reserved_minor == 0 and refused.original_id is None
    assert await store.release_reservation(refund, 500) is False  # not what it carries
    assert await store.release_reservation(refund, 600) is True
    assert await store.release_reservation(refund, 600) is False  # once
    after = await store.get_entry(original)
    assert after is not None and after.refunded_minor == 0
    released = await store.get_entry(refund)
    assert released is not None and released.reserved_minor == 0


async def test_a_release_that_would_go_below_zero_changes_nothing(store: Store) -> None:
    """Should the original's count already have lost the share (no path does
    that), the release is refused as a whole: the entry keeps what it carries."""
    original = await store.insert_entry(entry("000028", state=APPROVED, amount_minor=1000))
    refund = await store.insert_entry(entry("000029", amount_minor=600))
    assert await store.reserve_refunded(original, 600, 1000, refund) is True
    assert await store.add_refunded(original, -600, 1000) is True  # a wrong direct release
    with pytest.raises(StoreError):
        await store.release_reservation(refund, 600)
    kept = await store.get_entry(refund)
    assert kept is not None and kept.reserved_minor == 600
    missing = await store.insert_entry(entry("000039", amount_minor=100))
    assert await store.reserve_refunded(999_999, 100, 1000, missing) is False  # no original
    nothing = await store.get_entry(missing)
    assert nothing is not None and nothing.reserved_minor == 0
    with pytest.raises(StoreError):  # no such entry to carry it: the reservation rolls back
        await store.reserve_refunded(original, 100, 1000, 999_999)
    after = await store.get_entry(original)
    assert after is not None and after.refunded_minor == 0


async def test_stranded_reservations_are_ended_entries_still_carrying_one(store: Store) -> None:
    """What the sweeper must give back: a void or refund that ended not approved
    (not an approved refund, whose reservation is its share; not an approved
    void, whose reservation goes with its original's change; not a pending one)
    created before the cut-off, still carrying a reservation."""
    original = await store.insert_entry(entry("000040", state=APPROVED, amount_minor=1000))

    async def reserving(trace: str, txn_type: str, amount: int) -> int:
        entry_id = await store.insert_entry(entry(trace, txn_type=txn_type, amount_minor=amount))
        assert await store.reserve_refunded(original, amount, 1000, entry_id) is True
        return entry_id

    declined_void = await reserving("000041", "purchase_void", 100)
    approved_refund = await reserving("000042", "refund", 200)
    pending_refund = await reserving("000043", "refund", 300)
    declined_refund = await reserving("000044", "refund", 50)
    released = await reserving("000045", "refund", 60)
    approved_void = await reserving("000046", "purchase_void", 70)
    for entry_id in (declined_void, declined_refund, released):
        assert await store.finish_entry(entry_id, (PENDING,), state=DECLINED) is True
    for entry_id in (approved_refund, approved_void):
        assert await store.finish_entry(entry_id, (PENDING,), state=APPROVED) is True
    assert await store.release_reservation(released, 60) is True
    later = dt.datetime.now(UTC) + dt.timedelta(minutes=1)
    found = {e.id: e.reserved_minor for e in await store.stranded_reservations(later)}
    assert found == {declined_void: 100, declined_refund: 50}
    first = await store.stranded_reservations(later, limit=1)
    assert [e.id for e in first] == [declined_void]  # in creation order, paged
    rest = await store.stranded_reservations(later, limit=5, after=first[0])
    assert [e.id for e in rest] == [declined_refund]
    earlier = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    assert await store.stranded_reservations(earlier) == []
    assert pending_refund not in found


async def test_racing_releases_of_one_reservation_give_it_back_once(factory: StoreFactory) -> None:
    first, second = await factory.new(), await factory.new()
    original = await first.insert_entry(entry("000026", state=APPROVED, amount_minor=1000))
    refund = await first.insert_entry(entry("000027", amount_minor=700))
    assert await first.reserve_refunded(original, 700, 1000, refund) is True
    releases = [s.release_reservation(refund, 700) for s in [first, second] * 4]
    assert sum(await asyncio.gather(*releases)) == 1
    after = await second.get_entry(original)
    assert after is not None and after.refunded_minor == 0


async def test_two_instances_racing_on_one_request_exactly_one_wins(factory: StoreFactory) -> None:
    first, second = await factory.new(), await factory.new()
    attempts = [s.insert_entry(entry("000030")) for s in [first, second] * 4]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    ids = [o for o in outcomes if isinstance(o, int)]
    assert len(ids) == 1
    assert all(isinstance(o, DuplicateTransaction) for o in outcomes if not isinstance(o, int))
