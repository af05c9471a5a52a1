"""Chip messages after the online dialogue (terminal-link §8, network-link §8): the
script result advice (0620 / 951) and the TC upload (0320 / 203, 205), and the TC
reconciliation of a batch.

* Script advice: F55 must carry DF31 (30); F61 names the original in the open
  batch (25 when there is none of an allowed type).  The advice is journaled
  under the original's trace with direction ``advice`` (so a resent advice is
  the same row: answered 00 again, nothing sent twice), linked to the original,
  answered 00, and a 0620 to the network is queued in the SAF table in the same
  breath, which forwards it until the network answers 0630.
* TC upload: F55 must carry 9F26 (30).  F11 is the original's trace in the
  batch being settled; the TC is journaled with direction ``tc`` under that
  trace (a resend is the same row) and linked to the original when one exists
  (an unexpected TC is kept, unlinked, for the report).  Answered 00.
* :func:`tc_report`: every approved chip read (entry mode 05/07) of a type
  whose row names a chip use must have exactly one TC: the report lists the
  traces that have none (missing) and TCs naming no such entry (unexpected).
  The upload end logs it; ``posp batch tc-report`` prints it.

Invariants: no cryptogram is checked here and none is logged (tags by name only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from posp.errors import DecodeError, DuplicateTransaction
from posp.iso8583.fields import Field61
from posp.iso8583.tlv import build_f55, decode_f55, first_missing_tag
from posp.log import get_logger
from posp.network.mapping import script_advice_from_entry
from posp.network.saf import saf_payload
from posp.pipeline.chip import CHIP_ENTRY_MODES, FALLBACK_ENTRY_MODE
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext
from posp.pipeline.journal import build_entry
from posp.store.api import APPROVED, COMPLETED, PENDING, JournalEntry, SafItem, Store
from posp.txn import TXN_TYPES, TxnType, txn_row

_log = get_logger("posp.pipeline.chipadvice")


def _f55(ctx: TxnContext) -> bytes | None:
    """The request's F55 when it decodes and holds the row's mandatory tags."""
    use = ctx.route.row.chip
    value = ctx.message.get(55)
    if use is None or not isinstance(value, bytes):
        return None
    try:
        missing = first_missing_tag(decode_f55(value), use)
    except DecodeError:
        return None
    if missing is not None:
        _log.info("F55 lacks a mandatory tag", tag=missing)
        return None
    return value


#: What the network's 0620 carries of the terminal's F55 (network-link §8): the
#: script results and the tags naming the card's cryptogram; nothing else is
#: stored in the queue (no track-equivalent 57, no PAN 5A).
ADVICE_TAGS: Final = ("DF31", "9F26", "9F27", "9F36")


def advice_tags(f55: bytes) -> bytes:
    """The terminal's advice F55 cut to ``ADVICE_TAGS``, in that order."""
    decoded = decode_f55(f55)
    return build_f55((tag, value) for tag in ADVICE_TAGS if (value := decoded.get(tag)) is not None)


async def _journal_once(ctx: TxnContext, trace: str, original: JournalEntry | None) -> bool:
    """Journal the request under ``trace`` (the original's); False when it was already."""
    assert ctx.terminal is not None
    entry = build_entry(ctx, PENDING)
    entry.trace = trace
    entry.original_id = None if original is None else original.id
    store = ctx.services.store
    try:
        ctx.entry_id = await store.insert_entry(entry, dedupe=True)
    except DuplicateTransaction:
        found = await store.find_by_trace(
            ctx.terminal.terminal_id, ctx.f60.batch, trace, ctx.route.direction
        )
        ctx.entry_id = None if found is None else found.id
        ctx.repeated = True
        return False
    return True


async def record_script_advice(ctx: TxnContext) -> RC | None:
    """0620 / 951: journal against the original, queue the network advice, answer 00."""
    assert ctx.terminal is not None
    f55 = _f55(ctx)
    if f55 is None:
        return RC.FORMAT_ERROR
    f61 = Field61.parse(ctx.text(61))
    store = ctx.services.store
    original = await store.find_by_trace(ctx.terminal.terminal_id, f61.batch, f61.trace)
    if original is None or original.txn_type not in ctx.route.row.original:
        return RC.ORIGINAL_NOT_FOUND
    if not await _journal_once(ctx, f61.trace, original):
        # A repeat: the first may have died before queueing its advice; the queue
        # is idempotent per entry, so it is ensured again.
        _log.info("script advice repeated")
    network = ctx.services.settings.network
    advice = script_advice_from_entry(
        original,
        advice_tags(f55),
        acquirer_id=network.acquirer_id,
        forwarding_id=network.forwarding_id,
    )
    if advice is not None and ctx.entry_id is not None:
        await store.enqueue_saf(SafItem(entry_id=ctx.entry_id, payload=saf_payload(advice)))
        if ctx.services.saf is not None:
            await ctx.services.saf.kick()
    ctx.journal_changes["original_id"] = original.id
    return RC.APPROVED


async def record_tc(ctx: TxnContext) -> RC | None:
    """0320 / 203, 205: journal the TC under the original's trace, answer 00."""
    assert ctx.terminal is not None
    if _f55(ctx) is None:
        return RC.FORMAT_ERROR
    trace = ctx.text(11)
    original = await ctx.services.store.find_by_trace(
        ctx.terminal.terminal_id, ctx.f60.batch, trace
    )
    if original is not None and original.txn_type not in ctx.route.row.original:
        original = None
    await _journal_once(ctx, trace, original)
    if original is not None:
        ctx.journal_changes["original_id"] = original.id
    return RC.APPROVED


@dataclass(frozen=True, slots=True)
class TcReport:
    """TC reconciliation of one batch: traces of approved chip entries without a TC,
    and of TCs without such an entry."""

    terminal_id: str
    batch: str
    chip_approved: int
    tcs: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    fallbacks: int = 0  # approved or not: swipes of chip cards allowed by 60.5 = 2

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unexpected


def needs_tc(entry: JournalEntry) -> bool:
    """An approved (or since completed) chip read of a type the TC upload row names."""
    row = txn_row(entry.txn_type)
    return (
        row is not None
        and row.txn_type in TXN_TYPES[TxnType.TC_UPLOAD].original
        and entry.direction == "original"
        and entry.state in (APPROVED, COMPLETED)
        and entry.entry_mode in CHIP_ENTRY_MODES
    )


async def tc_report(store: Store, terminal_id: str, batch: str) -> TcReport:
    """Reconcile the TCs of ``batch`` with its approved chip entries."""
    entries = await store.list_entries(terminal_id, batch)
    chip = {e.trace for e in entries if needs_tc(e)}
    tcs = [e.trace for e in entries if e.direction == "tc" and e.txn_type == TxnType.TC_UPLOAD]
    uploaded = set(tcs)
    return TcReport(
        terminal_id,
        batch,
        len(chip),
        len(tcs),
        tuple(sorted(chip - uploaded)),
        tuple(sorted(uploaded - chip)),
        sum(1 for e in entries if e.entry_mode == FALLBACK_ENTRY_MODE),
    )
