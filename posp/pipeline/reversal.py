"""Terminal reversals (0400, terminal-link §3.2; network-link §7).

Invariants:
* A 0400 is always answered 00 once it is recorded: the terminal clears its
  pending reversal on any 0410, so a refusal would only make it resend.
* The original is found by (terminal, batch 60.2, trace F11) and must be of the
  type the 0400 names (60.1) with the same amount; otherwise the reversal is of
  an unknown original: recorded, answered 00, nothing undone.
* The 0400 is journaled before anything that needs the HSM; when its MAC
  cannot be checked (HSM down) it is kept and answered 00, and the switch
  verifies and applies it once the HSM answers (``verify_or_defer``).  A 0400
  whose MAC never verifies is journaled A0 and not applied.
* The original moves to ``reversed`` exactly once (compare-and-set); only the
  caller that made that change restores a voided or completed predecessor.
* Upstream undo goes through the durable SAF queue (0420 until a 0430 arrives),
  and the state change and the 0420 commit together.  A 0400 for an original
  that may have reached the network ensures its 0420 whatever the original's
  state — pending in flight, pending orphaned by a crash, timed out, approved,
  already reversed — and there is one 0420 per original ever; a 0400 for an
  original that provably never left (no network ids) queues none.  The
  terminal's 00 leaves only after the 0420 is queued.
* Reversing a void reinstates the voided original (voided → approved);
  reversing a completion re-opens its pre-authorization (completed → approved):
  the ``restores`` of the reversed type's row (``posp.txn``).
"""

from __future__ import annotations

from typing import Final

from posp.errors import DuplicateTransaction, HsmError
from posp.iso8583 import Message
from posp.log import get_logger
from posp.network.mapping import network_request
from posp.pipeline.checks import verify_mac
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext
from posp.pipeline.forward import reversal_item, reverse_upstream
from posp.pipeline.journal import journal_pending
from posp.pipeline.originals import amount_minor, release_entry_reservation
from posp.pipeline.risk import release_hold, restore_hold
from posp.store.api import (
    APPROVED,
    PENDING,
    REVERSED,
    TIMED_OUT,
    DeferredReversal,
    JournalEntry,
)
from posp.txn import BY_MSG_TYPE, TXN_TYPES, TxnType, txn_row

ANSWER: Final = RC.APPROVED
REASONS: Final = frozenset({RC.NO_ANSWER, RC.ERROR, RC.MAC_FAILED})
#: States of an original that a 0400 moves to ``reversed``.
REVERSIBLE_STATES: Final = (APPROVED, TIMED_OUT, PENDING)

_log = get_logger("posp.pipeline.reversal")


async def check_reversible_original(ctx: TxnContext) -> RC | None:
    """12 when a reversal names (60.1) a transaction type that is never reversed
    (a balance inquiry, a refund): before the field check, as a balance inquiry's
    reversal carries no F4."""
    return None if ctx.f60.msg_type in BY_MSG_TYPE else RC.INVALID_TRANSACTION


async def journal_reversal(ctx: TxnContext) -> RC | None:
    """Insert the pending reversal entry — before anything that needs the HSM —;
    a repeated 0400 is noted, not refused."""
    try:
        await journal_pending(ctx)
    except DuplicateTransaction:
        ctx.repeated = True
    return None


async def find_reversed_original(ctx: TxnContext) -> JournalEntry | None:
    assert ctx.terminal is not None
    original = await ctx.services.store.find_by_trace(
        ctx.terminal.terminal_id, ctx.f60.batch, ctx.text(11)
    )
    if (
        original is None
        or original.txn_type != _named_type(ctx)
        or original.amount_minor != amount_minor(ctx)
    ):
        return None
    return original


def _named_type(ctx: TxnContext) -> str | None:
    """The type of original the 0400 names in 60.1."""
    row = BY_MSG_TYPE.get(ctx.f60.msg_type)
    return None if row is None else row.name


def rebuilt_request(ctx: TxnContext, original: JournalEntry) -> Message | None:
    """The original's network request as sent (enough of it for a 0420), from the
    0400 (the original minus PIN/track) and the journaled network F7/F11."""
    row = txn_row(original.txn_type)
    if original.network_stan is None or original.network_f7 is None or original.rrn is None:
        return None
    if row is None or row.network_mti is None:
        return None
    assert ctx.merchant is not None
    request = network_request(
        row,
        ctx.message,
        merchant=ctx.merchant,
        pin_block_zpk=None,
        track2=None,
        track3=None,
        rrn=original.rrn,
        original=None,
    )
    network = ctx.services.settings.network
    request[7] = original.network_f7
    request[11] = original.network_stan
    request[32] = network.acquirer_id
    request[33] = network.forwarding_id
    return request


async def restore_prior(ctx: TxnContext, txn_type: str, original_id: int | None) -> None:
    """A reversed void or completion gives its own original back its earlier state."""
    row = txn_row(txn_type)
    change = None if row is None else row.restores
    if change is None or original_id is None:
        return
    if await ctx.services.store.transition(original_id, (change[0],), change[1]):
        await restore_hold(ctx.services, original_id)  # a voided purchase counts again


def reversal_reason(ctx: TxnContext) -> str:
    reason = ctx.message.get(39)
    return reason if isinstance(reason, str) and reason in REASONS else RC.NO_ANSWER


async def reverse_original(ctx: TxnContext) -> RC | None:
    """Reverse the original once and make sure its 0420 exists; always answer 00.

    Whatever state the original is in, a 0400 for one that may have reached the
    network (its network ids were journaled before sending) ensures a 0420 for
    it — once per original ever (the store keeps delivered 0420s).  One that
    provably never left is reversed in the journal alone.  A repeated 0400 does
    the same again: every step is a compare-and-set or idempotent."""
    original = await find_reversed_original(ctx)
    if original is None:
        _log.info("reversal of an unknown original")
        return ANSWER
    assert original.id is not None
    await _reverse(ctx, original)
    # Whatever the original's state now, a hold it still has is given back
    # (once: a compare-and-set; no-op when it was declined or voided before),
    # and so is what a refund or void of it still reserves in ITS original.
    await release_hold(ctx.services, original.id)
    await release_entry_reservation(ctx.services, original)
    return ANSWER


async def _reverse(ctx: TxnContext, original: JournalEntry) -> None:
    assert original.id is not None
    ctx.original = original
    ctx.journal_changes["original_id"] = original.id
    store = ctx.services.store
    sent = rebuilt_request(ctx, original)
    if sent is None:  # never left: nothing upstream to undo
        if await store.transition(original.id, REVERSIBLE_STATES, REVERSED):
            await restore_prior(ctx, original.txn_type, original.original_id)
        return
    if original.state not in (*REVERSIBLE_STATES, REVERSED):
        return  # declined, voided or completed: no money moved, or it moved back
    item = reversal_item(original.id, sent, reversal_reason(ctx))
    won = await reverse_upstream(ctx.services, original.id, REVERSIBLE_STATES, REVERSED, item)
    if won:
        await restore_prior(ctx, original.txn_type, original.original_id)
        _log.info("original reversed; 0420 queued", original_id=original.id)
    return


async def verify_or_defer(ctx: TxnContext) -> RC | None:
    """The 0400's MAC check (A0 when it fails).  When the HSM cannot answer, the
    0400 — already journaled — is kept with the TAK it was made under and
    answered 00: the terminal clears its pending reversal on any 0410, so the
    switch honours it itself once the HSM is back (``posp.pipeline.recovery``)."""
    try:
        return await verify_mac(ctx)
    except HsmError as exc:
        assert ctx.terminal is not None and ctx.terminal.tak_lmk is not None
        entry_id = ctx.entry_id or await _first_reversal_id(ctx)
        if entry_id is None:
            raise
        await ctx.services.store.defer_reversal(
            DeferredReversal(entry_id=entry_id, body=ctx.body, tak_lmk=ctx.terminal.tak_lmk)
        )
        _log.warning("reversal kept until the HSM answers", error_type=type(exc).__name__)
        ctx.reversal_deferred = True
        return ANSWER


async def _first_reversal_id(ctx: TxnContext) -> int | None:
    """The journal id of the first of repeated 0400s (the repeat has none of its own)."""
    assert ctx.terminal is not None
    first = await ctx.services.store.find_by_trace(
        ctx.terminal.terminal_id, ctx.f60.batch, ctx.text(11), TXN_TYPES[TxnType.REVERSAL].direction
    )
    return None if first is None else first.id
