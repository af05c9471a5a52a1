"""Finding and checking the original a void, refund or completion acts on, and
applying the approved outcome to it (terminal-link §3, §7).

Rules:
* Purchase void / completion void: the original (purchase / completion) is found
  by F61's trace in this terminal's **current** batch (61.1 must be that batch):
  missing → 25; already voided or reversed → 12; refunded in part (or a refund
  or another void of it in flight) → 12, since the void would give back the
  whole amount on top of the refund; F37/F38 given and different from the
  original's RRN/auth code → 25; amount different → 64.  The void then reserves
  the whole amount in the original's ``refunded_minor`` until its outcome is
  recorded (approved: until the original is voided), so a refund (→ 64) or a
  second void (→ 12) arriving meanwhile is refused instead of both reaching the
  network.
* Pre-auth void and completion: the open (approved) pre-authorization with the
  auth code F38, date 61.3 and card; missing → 25 (12 when the trace in F61 names
  that pre-auth and it is voided, reversed or completed); a pre-auth void's
  amount must equal the hold (64), a completion may be at most 115 % of it (64).
* Refund: the approved purchase or completion with RRN F37 and date 61.3 at this
  merchant (any batch); missing → 25, voided/reversed → 12; the amount is
  reserved with ``store.reserve_refunded`` (limit = original amount) so partial
  refunds never exceed it → 64, and only while the original is still approved
  (a void recorded or in flight meanwhile → 64 as well); the reservation is
  released unless the refund is approved (an approved refund's reservation is
  its share of ``refunded_minor`` for good: refunds are not reversible).
* Reservations are carried by the request's pending entry (``reserved_minor``)
  and given back exactly once by whoever ends it (``store.release_reservation``,
  a compare-and-set on that entry): this request, a terminal 0400 of it, the
  switch undoing an undelivered approval, or the in-doubt sweeper after a crash
  or a release that failed.  An approved void gives its reservation back only
  once its original is voided (``keeps_reservation``).
* The original changes state only when the network approves: void →
  approved→voided, completion → pre-auth approved→completed (compare-and-set).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from posp.iso8583.fields import Field61
from posp.log import get_logger
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import Services, TxnContext
from posp.store.api import APPROVED, COMPLETED, REVERSED, VOIDED, JournalEntry
from posp.txn import OriginalLookup

NOT_FOUND: Final = RC.ORIGINAL_NOT_FOUND
INVALID: Final = RC.INVALID_TRANSACTION
AMOUNT_MISMATCH: Final = RC.AMOUNT_MISMATCH
COMPLETION_LIMIT_PERCENT: Final = 115
_GONE: Final = frozenset({VOIDED, REVERSED, COMPLETED})

_log = get_logger("posp.pipeline.originals")


def amount_minor(ctx: TxnContext) -> int:
    value = ctx.message.get(4)
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def _optional_text(ctx: TxnContext, number: int) -> str | None:
    value = ctx.message.get(number)
    return value if isinstance(value, str) and value.strip() else None


def _pan_hash(ctx: TxnContext) -> str | None:
    return ctx.pan_hash(ctx.pan) if ctx.pan else None


def _same_card(ctx: TxnContext, original: JournalEntry) -> bool:
    theirs, ours = original.pan_hash, _pan_hash(ctx)
    return theirs is None or ours is None or theirs == ours


async def find_void_original(ctx: TxnContext) -> RC | None:
    """Purchase void / completion void: the original in the current batch."""
    assert ctx.terminal is not None
    f61 = Field61.parse(ctx.text(61))
    if f61.batch != ctx.terminal.batch:
        return NOT_FOUND  # only the current batch may be voided
    original = await ctx.services.store.find_by_trace(
        ctx.terminal.terminal_id, f61.batch, f61.trace
    )
    if original is None or original.txn_type not in ctx.route.row.original:
        return NOT_FOUND
    if original.state in _GONE:
        return INVALID
    if original.state != APPROVED or not _same_card(ctx, original):
        return NOT_FOUND
    if original.refunded_minor:
        _log.info("void of a refunded original refused", refunded_minor=original.refunded_minor)
        return INVALID
    rrn, auth_code = _optional_text(ctx, 37), _optional_text(ctx, 38)
    if (rrn is not None and rrn != original.rrn) or (
        auth_code is not None and auth_code != original.auth_code
    ):
        return NOT_FOUND
    amount = amount_minor(ctx)
    if amount != original.amount_minor:
        return AMOUNT_MISMATCH
    assert original.id is not None
    # The whole amount, only while nothing is refunded or reserved: one statement,
    # so a refund or another void racing this one is refused, never both sent.
    if not await _reserve(ctx, original.id, amount, amount):
        _log.info("void refused: a refund or void of the original is in flight")
        return INVALID
    ctx.original = original
    return None


async def _gone_preauth(ctx: TxnContext, f61: Field61, auth_code: str) -> bool:
    """True when F61's trace names this auth code's pre-auth and it is no longer open."""
    assert ctx.terminal is not None
    if f61.trace == "000000":
        return False
    entry = await ctx.services.store.find_by_trace(ctx.terminal.terminal_id, f61.batch, f61.trace)
    return (
        entry is not None
        and entry.txn_type in ctx.route.row.original
        and entry.auth_code == auth_code
        and entry.state in _GONE
    )


async def find_preauth(ctx: TxnContext) -> RC | None:
    """Pre-auth void / completion: the open pre-authorization by F38, 61.3 and card."""
    assert ctx.merchant is not None
    f61 = Field61.parse(ctx.text(61))
    auth_code = ctx.text(38)
    original = await ctx.services.store.find_preauth(
        ctx.merchant.merchant_id, auth_code, f61.date or None, _pan_hash(ctx)
    )
    if original is None:
        return INVALID if await _gone_preauth(ctx, f61, auth_code) else NOT_FOUND
    hold = original.amount_minor or 0
    amount = amount_minor(ctx)
    if ctx.route.row.on_approval == (APPROVED, VOIDED):  # a void takes the whole hold
        if amount != hold:
            return AMOUNT_MISMATCH
    elif amount * 100 > hold * COMPLETION_LIMIT_PERCENT:
        return AMOUNT_MISMATCH
    ctx.original = original
    return None


async def find_refund_original(ctx: TxnContext) -> RC | None:
    """Refund: the original by RRN and date; reserve the amount against it."""
    assert ctx.merchant is not None
    f61 = Field61.parse(ctx.text(61))
    original = await ctx.services.store.find_by_rrn(
        ctx.text(37), local_date=f61.date or None, merchant_id=ctx.merchant.merchant_id
    )
    if original is None or original.txn_type not in ctx.route.row.original:
        return NOT_FOUND
    if original.state in (VOIDED, REVERSED):
        return INVALID
    if original.state != APPROVED or not _same_card(ctx, original):
        return NOT_FOUND
    assert original.id is not None
    amount = amount_minor(ctx)
    limit = original.amount_minor or 0
    if amount <= 0 or not await _reserve(ctx, original.id, amount, limit):
        return AMOUNT_MISMATCH
    ctx.original = original
    return None


#: How a type finds its original (its row's ``lookup``) → the step that does it.
FINDERS: Final = MappingProxyType(
    {
        OriginalLookup.CURRENT_BATCH_TRACE: find_void_original,
        OriginalLookup.OPEN_PREAUTH: find_preauth,
        OriginalLookup.RRN: find_refund_original,
    }
)


async def find_original(ctx: TxnContext) -> RC | None:
    """Dispatch to the finder of the route's lookup (none for purchases, pre-auths,
    balance)."""
    finder = FINDERS.get(ctx.route.row.lookup)
    return None if finder is None else await finder(ctx)


async def _reserve(ctx: TxnContext, original_id: int, amount: int, limit: int) -> bool:
    """Reserve ``amount`` in the original's refunded_minor (up to ``limit``), recorded
    on this request's pending entry (journaled before the finders run) in the same
    transaction."""
    assert ctx.entry_id is not None
    # Noted before the write: should the deadline cut it off after it committed, the
    # release still finds it (and finds nothing to give back if it did not commit).
    # A release that runs while that commit is still in flight (PostgreSQL) finds
    # nothing yet; the sweeper gives it back once the entry has ended.
    ctx.reserved_minor = amount
    if await ctx.services.store.reserve_refunded(original_id, amount, limit, ctx.entry_id):
        return True
    ctx.reserved_minor = 0
    return False


async def release_reservation(ctx: TxnContext) -> None:
    """Give back this request's reservation in its original's ``refunded_minor``
    (a refund that did not end approved; a void once its outcome is recorded,
    unless ``keeps_reservation``; the switch's undo of a void it kept it for).
    Through its pending entry, which knows its original, so that it happens once
    whoever gets there first (module docstring)."""
    reserved, ctx.reserved_minor = ctx.reserved_minor, 0
    if reserved and ctx.entry_id is not None:
        await ctx.services.store.release_reservation(ctx.entry_id, reserved)


async def release_entry_reservation(services: Services, entry: JournalEntry) -> bool:
    """Give back what ``entry`` (a refund or void found in the store that ended not
    approved) still reserves in its original: a 0400 of it, the sweeper.  True
    when this call gave it back."""
    if entry.reserved_minor <= 0 or entry.id is None:
        return False
    return await services.store.release_reservation(entry.id, entry.reserved_minor)


def keeps_reservation(ctx: TxnContext) -> bool:
    """An approved refund keeps what it reserved (it is refunded).  An approved void
    gives its reservation back once its original is voided (the original's state
    then says it all); should that change have failed, it keeps the reservation,
    so the still-approved original cannot be refunded on top of the void, until
    the void is undone (the switch's own undo or a 0400 gives it back then)."""
    if ctx.final_state != APPROVED:
        return False
    return ctx.route.row.lookup == OriginalLookup.RRN or not ctx.original_moved


async def apply_approval(ctx: TxnContext) -> None:
    """The network approved: move the original on (once; a lost race is logged)."""
    change = ctx.route.row.on_approval
    if change is None or ctx.original is None or ctx.original.id is None:
        return
    moved = await ctx.services.store.transition(ctx.original.id, (change[0],), change[1])
    ctx.original_moved = moved
    if not moved:
        _log.warning("original changed state meanwhile", original_id=ctx.original.id)
