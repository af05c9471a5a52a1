"""Settlement (0500) and batch upload (0320) against a journal seeded through
the store API — the batch lifecycle of posp.pipeline.settlement without sockets."""

from __future__ import annotations

from posp.iso8583.fields import SettlementF48, SettlementTotalsF48, UploadRecord
from posp.pipeline.settlement import end_upload, next_batch, settle, totals_match, upload
from posp.store.api import APPROVED, DECLINED, REVERSED, VOIDED, BatchTotals, Store

from .conftest import (
    BATCH,
    DOMESTIC_PAN,
    FOREIGN_PAN,
    MERCHANT,
    TERMINAL,
    Journal,
    pan_hash,
)

ZERO = SettlementTotalsF48(0, 0, 0, 0)


def totals(
    debit_minor: int, debits: int, credit_minor: int = 0, credits: int = 0
) -> SettlementTotalsF48:
    return SettlementTotalsF48(debit_minor, debits, credit_minor, credits)


async def test_balanced_domestic_batch_answers_result_1_for_both_classes(
    store: Store, journal: Journal
) -> None:
    await journal.add("purchase", 1000)
    await journal.add("purchase", 2500)
    outcome = await settle(store, TERMINAL, MERCHANT, BATCH, SettlementF48(totals(3500, 2), ZERO))
    assert (outcome.answer.domestic.result, outcome.answer.foreign.result) == ("1", "1")
    assert outcome.answer.domestic.debit_amount_minor == 3500  # F48 echoed
    recorded = await store.get_settlement(TERMINAL, BATCH)
    assert recorded is not None and recorded.domestic_balanced and recorded.foreign_balanced
    assert recorded.domestic.debit_count == 2


async def test_domestic_count_off_by_one_is_unbalanced_only_for_domestic(
    store: Store, journal: Journal
) -> None:
    await journal.add("purchase", 1000)
    await journal.add("purchase", 1000, pan=FOREIGN_PAN)
    reported = SettlementF48(totals(2000, 2), totals(1000, 1))
    outcome = await settle(store, TERMINAL, MERCHANT, BATCH, reported)
    assert (outcome.answer.domestic.result, outcome.answer.foreign.result) == ("2", "1")
    assert not outcome.balanced


async def test_foreign_amount_mismatch_is_unbalanced_only_for_foreign(
    store: Store, journal: Journal
) -> None:
    await journal.add("purchase", 1000)
    await journal.add("purchase", 700, pan=FOREIGN_PAN)
    await journal.add("refund", 200, pan=FOREIGN_PAN)
    reported = SettlementF48(totals(1000, 1), totals(700, 1, 250, 1))
    outcome = await settle(store, TERMINAL, MERCHANT, BATCH, reported)
    assert (outcome.answer.domestic.result, outcome.answer.foreign.result) == ("1", "2")
    recorded = await store.get_settlement(TERMINAL, BATCH)
    assert recorded is not None and recorded.terminal_foreign.credit_amount_minor == 250


async def test_voided_reversed_declined_excluded_and_refunds_counted_as_credits(
    store: Store, journal: Journal
) -> None:
    await journal.add("purchase", 100)
    await journal.add("purchase", 200)
    voided = await journal.add("purchase", 300, state=VOIDED)
    await journal.add("void", 300, state=APPROVED)  # the void itself is neither debit nor credit
    await journal.add("purchase", 400, state=REVERSED)
    await journal.add("reversal", 400, state=APPROVED, direction="reversal", trace="000005")
    await journal.add("purchase", 500, state=DECLINED)
    await journal.add("refund", 50)
    await journal.add("refund", 60, state=DECLINED)
    assert voided.state == VOIDED
    outcome = await settle(
        store, TERMINAL, MERCHANT, BATCH, SettlementF48(totals(300, 2, 50, 1), ZERO)
    )
    assert outcome.balanced


async def test_empty_batch_with_zero_totals_is_balanced(store: Store) -> None:
    outcome = await settle(store, TERMINAL, MERCHANT, BATCH, SettlementF48(ZERO, ZERO))
    assert outcome.balanced


async def test_repeated_settlement_keeps_upload_progress(store: Store, journal: Journal) -> None:
    entry = await journal.add("purchase", 1000)
    reported = SettlementF48(totals(1000, 1), ZERO)
    await settle(store, TERMINAL, MERCHANT, BATCH, reported)
    record = UploadRecord("00", entry.trace, DOMESTIC_PAN, 1000)
    await upload(store, TERMINAL, BATCH, [record], pan_hash)
    await settle(store, TERMINAL, MERCHANT, BATCH, reported)
    recorded = await store.get_settlement(TERMINAL, BATCH)
    assert recorded is not None and recorded.upload_records == 1


async def test_upload_checks_each_record_against_the_journal(
    store: Store, journal: Journal
) -> None:
    good = await journal.add("purchase", 1000)
    wrong_amount = await journal.add("purchase", 2000)
    wrong_pan = await journal.add("purchase", 3000)
    foreign = await journal.add("refund", 400, pan=FOREIGN_PAN)
    await settle(
        store, TERMINAL, MERCHANT, BATCH, SettlementF48(totals(6000, 3), totals(0, 0, 400, 1))
    )
    records = [
        UploadRecord("00", good.trace, DOMESTIC_PAN, 1000),
        UploadRecord("00", wrong_amount.trace, DOMESTIC_PAN, 2001),
        UploadRecord("00", wrong_pan.trace, "6225880000000000028", 3000),
        UploadRecord("01", foreign.trace, FOREIGN_PAN, 400),
        UploadRecord("00", "999999", DOMESTIC_PAN, 10),
    ]
    outcome = await upload(store, TERMINAL, BATCH, records, pan_hash)
    assert (outcome.received, outcome.new, outcome.new_mismatches) == (5, 5, 3)
    by_trace = {u.trace: u for u in await store.list_uploads(TERMINAL, BATCH)}
    assert by_trace[good.trace].matched and by_trace[foreign.trace].matched
    assert "amount" in by_trace[wrong_amount.trace].reason
    assert "card number" in by_trace[wrong_pan.trace].reason
    assert "no approved" in by_trace["999999"].reason
    settlement = await store.get_settlement(TERMINAL, BATCH)
    assert settlement is not None
    assert (settlement.upload_records, settlement.upload_mismatches) == (5, 3)


async def test_interrupted_upload_resumed_idempotently_then_end_closes_batch(
    store: Store, journal: Journal
) -> None:
    entries = [await journal.add("purchase", 100 * (i + 1)) for i in range(10)]
    total = sum(e.amount_minor or 0 for e in entries)
    await settle(store, TERMINAL, MERCHANT, BATCH, SettlementF48(totals(total, 10), ZERO))
    records = [UploadRecord("00", e.trace, DOMESTIC_PAN, e.amount_minor or 0) for e in entries]
    first = await upload(store, TERMINAL, BATCH, records[:8], pan_hash)
    # power lost after the first message; the terminal resends from the start
    again = await upload(store, TERMINAL, BATCH, records[:8], pan_hash)
    rest = await upload(store, TERMINAL, BATCH, records[8:], pan_hash)
    assert (first.new, again.new, rest.new) == (8, 0, 2)
    ended = await end_upload(store, TERMINAL, BATCH, 10)
    assert ended.closed and ended.records == 10 and ended.next_batch == "000002"
    terminal = await store.get_terminal(TERMINAL)
    assert terminal is not None and terminal.batch == "000002"
    settlement = await store.get_settlement(TERMINAL, BATCH)
    assert settlement is not None and settlement.upload_complete
    assert (settlement.upload_records, settlement.upload_mismatches) == (10, 0)


async def test_repeated_end_message_does_not_close_the_next_batch(store: Store) -> None:
    await settle(store, TERMINAL, MERCHANT, BATCH, SettlementF48(ZERO, ZERO))
    assert (await end_upload(store, TERMINAL, BATCH, 0)).closed
    assert not (await end_upload(store, TERMINAL, BATCH, 0)).closed
    terminal = await store.get_terminal(TERMINAL)
    assert terminal is not None and terminal.batch == "000002"


async def test_settled_but_never_uploaded_batch_stays_open(store: Store, journal: Journal) -> None:
    await journal.add("purchase", 100)
    await settle(store, TERMINAL, MERCHANT, BATCH, SettlementF48(totals(100, 1), ZERO))
    terminal = await store.get_terminal(TERMINAL)
    assert terminal is not None and terminal.batch == BATCH
    batches = await store.list_batches(TERMINAL)
    assert batches[0]["status"] == "open" and batches[0]["settled"]


def test_counts_over_999_compare_modulo_1000_but_amounts_exactly() -> None:
    """F48 counts are n3: 1,234 debits arrive as 234."""
    journal = BatchTotals(debit_amount_minor=123_400, debit_count=1234)
    assert totals_match(totals(123_400, 234), journal)
    assert not totals_match(totals(123_400, 233), journal)
    assert not totals_match(totals(123_300, 234), journal)


def test_next_batch_increments_and_wraps_like_traces() -> None:
    assert next_batch("000001") == "000002"
    assert next_batch("000999") == "001000"
    assert next_batch("999999") == "000001"
