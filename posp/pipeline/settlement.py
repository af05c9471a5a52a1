"""Settlement (0500) and batch upload (0320) against the journal (terminal-link §3.3).

The batch lifecycle, as the switch runs it:

1. The terminal works in the batch the switch gave it at sign-in
   (``Terminal.batch``); the core's batch check answers 77 to any other batch.
2. **0500 settlement** (60.3 ``201``): the terminal's totals in F48 are compared,
   per card class, with :meth:`Store.batch_totals`; the answer echoes F48 with
   each class's result digit ``1`` (balanced) or ``2`` (unbalanced), 39 ``00``,
   and the outcome is recorded (``record_settlement``; a repeated 0500 for the
   same batch replaces it and keeps the upload progress).  The batch stays OPEN.
3. **0320 batch upload** (60.3 ``201``): each record is checked against the
   journal (approved, non-voided, non-reversed debit or credit with that trace,
   PAN hash, amount and card class) and recorded idempotently, so a terminal
   that lost power mid-upload may resend records; mismatches are kept for the
   operator (``posp batch show``), the terminal still gets 00.
4. **0320 end** (60.3 ``202`` unbalanced / ``207`` balanced, F48 = total n4):
   the upload is marked complete and the batch is CLOSED
   (``close_batch(batch → batch + 1)``, wrapping 999999 → 000001).  The terminal
   increments its batch after this message, so from then on only batch + 1 is
   accepted; a void of a transaction in the closed batch finds nothing in the
   current batch and gets 25.

A terminal that settles but never sends the end message keeps its batch open:
it may upload (or settle) again, and its next sign-in hands back the same batch.

Invariants: these steps never raise on bad terminal input (a malformed F48
answers 30); PANs are handled only as the caller's keyed hash and a 6+4 mask.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from posp.iso8583.fields import SettlementF48, SettlementTotalsF48, UploadRecord
from posp.log import get_logger
from posp.store.api import BatchTotals, JournalEntry, Settlement, Store, UploadedRecord

log = get_logger(__name__)

#: F48 result digit of each totals class.
RESULT_BALANCED = "1"
RESULT_UNBALANCED = "2"

PanHasher = Callable[[str], str]


def next_batch(batch: str) -> str:
    """The batch after ``batch`` (n6), wrapping 999999 → 000001 like traces do."""
    value = int(batch) + 1
    return f"{value if value <= 999_999 else 1:06d}"


#: F48 counts are n3 (settlement) and n4 (upload end total): a terminal can send
#: only the low digits of a larger count.
F48_COUNT_MODULUS = 1000
F48_END_TOTAL_MODULUS = 10_000


def totals_match(reported: SettlementTotalsF48, journal: BatchTotals) -> bool:
    """Balanced when all four figures agree.  Counts are compared modulo 1000
    because F48 carries them as n3 (a busy terminal's 1,234 debits arrive as
    234); amounts (n12) must agree exactly, so a lost or extra sale still shows."""
    m = F48_COUNT_MODULUS
    return (
        reported.debit_amount_minor == journal.debit_amount_minor
        and reported.debit_count % m == journal.debit_count % m
        and reported.credit_amount_minor == journal.credit_amount_minor
        and reported.credit_count % m == journal.credit_count % m
    )


def as_batch_totals(reported: SettlementTotalsF48) -> BatchTotals:
    return BatchTotals(
        debit_amount_minor=reported.debit_amount_minor,
        debit_count=reported.debit_count,
        credit_amount_minor=reported.credit_amount_minor,
        credit_count=reported.credit_count,
    )


def answer_f48(reported: SettlementF48, domestic_ok: bool, foreign_ok: bool) -> SettlementF48:
    """The terminal's F48 echoed with each class's result digit set."""

    def digit(ok: bool) -> str:
        return RESULT_BALANCED if ok else RESULT_UNBALANCED

    return SettlementF48(
        domestic=dataclasses.replace(reported.domestic, result=digit(domestic_ok)),
        foreign=dataclasses.replace(reported.foreign, result=digit(foreign_ok)),
    )


@dataclass(frozen=True, slots=True)
class SettlementOutcome:
    answer: SettlementF48
    settlement: Settlement

    @property
    def balanced(self) -> bool:
        return self.settlement.domestic_balanced and self.settlement.foreign_balanced


async def settle(
    store: Store, terminal_id: str, merchant_id: str, batch: str, reported: SettlementF48
) -> SettlementOutcome:
    """Compare the terminal's totals with the journal's and record the outcome."""
    domestic, foreign = await store.batch_totals(terminal_id, batch)
    earlier = await store.get_settlement(terminal_id, batch)
    settlement = Settlement(
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        batch=batch,
        domestic=domestic,
        foreign=foreign,
        terminal_domestic=as_batch_totals(reported.domestic),
        terminal_foreign=as_batch_totals(reported.foreign),
        domestic_balanced=totals_match(reported.domestic, domestic),
        foreign_balanced=totals_match(reported.foreign, foreign),
        settled_at=dt.datetime.now(dt.UTC),
    )
    if earlier is not None:
        # A repeated 0500 (lost answer) must not forget the upload already received.
        settlement.upload_records = earlier.upload_records
        settlement.upload_mismatches = earlier.upload_mismatches
        settlement.upload_complete = earlier.upload_complete
    settlement.id = await store.record_settlement(settlement)
    log.info(
        "settlement",
        terminal_id=terminal_id,
        batch=batch,
        domestic_balanced=settlement.domestic_balanced,
        foreign_balanced=settlement.foreign_balanced,
    )
    answer = answer_f48(reported, settlement.domestic_balanced, settlement.foreign_balanced)
    return SettlementOutcome(answer, settlement)


def mismatch_reason(record: UploadRecord, pan_hash: str, entry: JournalEntry | None) -> str:
    """Why an upload record does not match the journal; "" when it does."""
    if entry is None:
        return "no approved debit or credit with this trace in the batch"
    if entry.pan_hash != pan_hash:
        return "card number differs from the journal"
    if entry.amount_minor != record.amount_minor:
        return f"amount {record.amount_minor} differs from the journal's {entry.amount_minor}"
    if entry.card_class != record.card_class:
        return f"card class {record.card_class} differs from the journal's {entry.card_class}"
    return ""


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    received: int  # records in this message
    new: int  # not seen before (the rest are resent after an interruption)
    new_mismatches: int


async def upload(
    store: Store,
    terminal_id: str,
    batch: str,
    records: list[UploadRecord],
    pan_hash: PanHasher,
) -> UploadOutcome:
    """Check and record one 0320's records; resent records are accepted and not recounted."""
    new = mismatches = 0
    for record in records:
        hashed = pan_hash(record.pan.lstrip("0"))
        entry = await store.find_debit_or_credit(terminal_id, batch, record.trace)
        reason = mismatch_reason(record, hashed, entry)
        uploaded = UploadedRecord(
            terminal_id=terminal_id,
            batch=batch,
            trace=record.trace,
            card_class=record.card_class,
            pan_hash=hashed,
            amount_minor=record.amount_minor,
            matched=not reason,
            reason=reason,
        )
        if await store.record_upload(uploaded):
            new += 1
            if reason:
                mismatches += 1
                log.warning(
                    "upload_mismatch",
                    terminal_id=terminal_id,
                    batch=batch,
                    trace=record.trace,
                    reason=reason,
                )
    if new:
        await _add_upload_progress(store, terminal_id, batch, new, mismatches)
    return UploadOutcome(received=len(records), new=new, new_mismatches=mismatches)


@dataclass(frozen=True, slots=True)
class UploadEndOutcome:
    records: int  # records the switch holds for the batch
    reported_total: int  # the terminal's count (F48)
    closed: bool  # this call closed the batch
    next_batch: str


async def end_upload(
    store: Store, terminal_id: str, batch: str, reported_total: int
) -> UploadEndOutcome:
    """Mark the upload complete and close the batch (the terminal moves to batch + 1)."""
    records = await _recount_upload(store, terminal_id, batch)
    following = next_batch(batch)
    closed = await store.close_batch(terminal_id, batch, following)
    if records % F48_END_TOTAL_MODULUS != reported_total:
        log.warning(
            "upload_count_differs",
            terminal_id=terminal_id,
            batch=batch,
            received=records,
            reported=reported_total,
        )
    log.info(
        "batch_closed" if closed else "batch_already_closed",
        terminal_id=terminal_id,
        batch=batch,
        next_batch=following,
    )
    return UploadEndOutcome(records, reported_total, closed, following)


async def _add_upload_progress(
    store: Store, terminal_id: str, batch: str, new: int, mismatches: int
) -> None:
    """Add newly recorded records to the batch's settlement (if it was settled)."""
    settlement = await store.get_settlement(terminal_id, batch)
    if settlement is not None:
        settlement.upload_records += new
        settlement.upload_mismatches += mismatches
        await store.record_settlement(settlement)


async def _recount_upload(store: Store, terminal_id: str, batch: str) -> int:
    """Recount the batch's uploaded records into its settlement, mark the upload
    complete, and return the count.  Counting from ``list_uploads`` once at the
    end makes the figures exact whatever was resent or interleaved before."""
    uploads = await store.list_uploads(terminal_id, batch)
    settlement = await store.get_settlement(terminal_id, batch)
    if settlement is not None:
        settlement.upload_records = len(uploads)
        settlement.upload_mismatches = sum(1 for u in uploads if not u.matched)
        settlement.upload_complete = True
        await store.record_settlement(settlement)
    return len(uploads)
