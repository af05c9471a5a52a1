"""Terminal reversals (0400, terminal-link §3.2; network-link §7).

Invariants:
* A 0400 is always answered 00 once it is recorded: the terminal clears its
  pending reversal on any 0410, so a refusal would only make it resend.
* The original is found by (terminal, batch 60.2, trace F11) and must be of the
  type the 0400 names (60.1) with the same amount; otherwise the reversal is of
  an unknown original: recorded, answered 00, nothing undone.
* The original moves to ``reversed`` exactly once (compare-and-set); only the
  caller that made that change undoes anything, so a repeated 0400 (journaled
  as a duplicate) never undoes twice.
* Upstream undo goes through the durable SAF queue (0420 until a 0430 arrives);
  the terminal's 00 leaves only after the 0420 is queued.  For an original still
  ``pending`` (its network answer not yet in), the forwarding step holds the
  sent request and queues the 0420 itself when its own CAS loses.
* Reversing a void reinstates the voided original (voided → approved);
  reversing a completion re-opens its pre-authorization (completed → approved).
"""

from __future__ import annotations

from typing import Final

from posp.errors import DuplicateTransaction
from posp.iso8583 import Message
from posp.log import get_logger
from posp.network.mapping import network_request
from posp.pipeline.context import TxnContext
from posp.pipeline.forward import EXTRA_JOURNAL, queue_reversal
from posp.pipeline.journal import journal_pending
from posp.pipeline.originals import amount_minor
from posp.store.api import APPROVED, COMPLETED, PENDING, REVERSED, TIMED_OUT, VOIDED, JournalEntry

ANSWER: Final = "00"
EXTRA_REPEATED: Final = "repeated_reversal"
#: 60.1 of the 0400 → the original's transaction type.
ORIGINAL_TYPE: Final[dict[str, str]] = {
    "22": "purchase",
    "23": "purchase_void",
    "10": "preauth",
    "11": "preauth_void",
    "20": "completion",
    "21": "completion_void",
}
#: Reversed type → (state of its own original to restore, restored state).
RESTORES: Final[dict[str, tuple[str, str]]] = {
    "purchase_void": (VOIDED, APPROVED),
    "completion_void": (VOIDED, APPROVED),
    "preauth_void": (VOIDED, APPROVED),
    "completion": (COMPLETED, APPROVED),
}
REASONS: Final = frozenset({"98", "06", "A0"})
NOT_REVERSIBLE: Final = "12"

_log = get_logger("posp.pipeline.reversal")


async def check_reversible_original(ctx: TxnContext) -> str | None:
    """12 when a reversal names (60.1) a transaction type that is never reversed
    (a balance inquiry, a refund): before the field check, as a balance inquiry's
    reversal carries no F4."""
    return None if ctx.f60.msg_type in ORIGINAL_TYPE else NOT_REVERSIBLE


async def journal_reversal(ctx: TxnContext) -> str | None:
    """Insert the pending reversal entry; a repeated 0400 is noted, not refused."""
    try:
        await journal_pending(ctx)
    except DuplicateTransaction:
        ctx.extras[EXTRA_REPEATED] = True
    return None


async def find_reversed_original(ctx: TxnContext) -> JournalEntry | None:
    assert ctx.terminal is not None
    original = await ctx.services.store.find_by_trace(
        ctx.terminal.terminal_id, ctx.f60.batch, ctx.text(11)
    )
    if (
        original is None
        or original.txn_type != ORIGINAL_TYPE.get(ctx.f60.msg_type)
        or original.amount_minor != amount_minor(ctx)
    ):
        return None
    return original


def rebuilt_request(ctx: TxnContext, original: JournalEntry) -> Message | None:
    """The original's network request as sent (enough of it for a 0420), from the
    0400 (the original minus PIN/track) and the journaled network F7/F11."""
    if original.network_stan is None or original.network_f7 is None or original.rrn is None:
        return None
    assert ctx.merchant is not None
    request = network_request(
        original.txn_type,
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


async def restore_prior(ctx: TxnContext, original: JournalEntry) -> None:
    """A reversed void or completion gives its own original back its earlier state."""
    change = RESTORES.get(original.txn_type)
    if change is None or original.original_id is None:
        return
    await ctx.services.store.transition(original.original_id, (change[0],), change[1])


async def reverse_original(ctx: TxnContext) -> str | None:
    """Reverse the original once; always answer 00."""
    original = await find_reversed_original(ctx)
    if original is None:
        _log.info("reversal of an unknown original")
        return ANSWER
    assert original.id is not None
    ctx.original = original
    ctx.extras.setdefault(EXTRA_JOURNAL, {})["original_id"] = original.id
    if ctx.extras.get(EXTRA_REPEATED):
        return ANSWER
    store = ctx.services.store
    if original.state == PENDING and await store.transition(original.id, (PENDING,), REVERSED):
        return ANSWER  # the forwarding step queues the 0420 when its answer comes
    if not await store.transition(original.id, (APPROVED, TIMED_OUT, PENDING), REVERSED):
        return ANSWER  # declined, voided, completed or already reversed: nothing to undo
    refreshed = await store.get_entry(original.id)
    sent = rebuilt_request(ctx, refreshed or original)
    if sent is None:
        # Still pending when re-read: the forwarding step queues the 0420.
        return ANSWER
    reason = ctx.message.get(39)
    await queue_reversal(
        ctx.services,
        original.id,
        sent,
        reason if isinstance(reason, str) and reason in REASONS else "98",
    )
    await restore_prior(ctx, original)
    _log.info("original reversed; 0420 queued", original_id=original.id)
    return ANSWER
