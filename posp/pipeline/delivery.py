"""Approvals the switch cannot deliver are the switch's to reverse.

An approval counts for the merchant only when the terminal receives the 00
with a MAC it can check.  When the switch cannot get that answer to it — the
answer's MAC cannot be computed (HSM failure), the connection is gone when
the answer is ready, the request's deadline ended the steps after the network
approved, or the server's own deadline cancelled the request — the terminal
does not count the sale, and it may not reverse it either (a 96 is a plain
decline to it).  The cardholder would stay debited for a sale nobody counts.
So the switch reverses such an approval itself, at once.

Invariants:
* Only an entry this request moved to ``approved`` (``ctx.final_state``) of a
  type that moves money and is reversible (``Route.reversible``) is undone.
* The undo is ``approved → reversed`` with its 0420 in one store transaction
  (``forward.reverse_upstream``); a voided or completed predecessor gets its
  state back as a terminal reversal would give it.  Repeats are harmless: the
  compare-and-set lets one caller win and the 0420 is idempotent per entry.
* The terminal, if it is still there, gets 96 without a MAC instead of an
  unsigned 00; the journal records the 96 with the ``reversed`` state.
"""

from __future__ import annotations

from typing import Final

from posp.log import get_logger
from posp.pipeline.codes import ResponseCode
from posp.pipeline.context import TxnContext
from posp.pipeline.forward import entry_reversal_item, reversal_item, reverse_upstream
from posp.pipeline.originals import release_reservation
from posp.pipeline.reversal import restore_prior
from posp.pipeline.risk import release_hold
from posp.store.api import APPROVED, REVERSED, SafItem

#: 0420 reason: an error after the request was sent (terminal-link §3.2).
UNDELIVERED_REASON: Final = ResponseCode.ERROR

_log = get_logger("posp.pipeline.delivery")


def approval_at_stake(ctx: TxnContext) -> bool:
    """True while this request holds an approval that moved money and that the
    switch can still take back."""
    return ctx.final_state == APPROVED and ctx.route.reversible and ctx.entry_id is not None


async def undo_approval(ctx: TxnContext, why: str) -> None:
    """Reverse this request's approval upstream (see the module docstring)."""
    if not approval_at_stake(ctx):
        return
    assert ctx.entry_id is not None
    item = await _undo_item(ctx, ctx.entry_id)
    if item is None:
        _log.error("approval cannot be reversed: no network ids", why=why)
        return
    won = await reverse_upstream(ctx.services, ctx.entry_id, (APPROVED,), REVERSED, item)
    ctx.final_state = REVERSED
    if won:
        original_id = ctx.original.id if ctx.original is not None else None
        await restore_prior(ctx, ctx.route.name, original_id)
        await release_hold(ctx.services, ctx.entry_id)
        await release_reservation(ctx)  # a void kept it while its original did not move
    _log.warning("approval not delivered; reversed by the switch", why=why)


async def _undo_item(ctx: TxnContext, entry_id: int) -> SafItem | None:
    """The 0420 of the approved request: from the request as sent, else (never
    expected: approved means sent) rebuilt from the journal."""
    if ctx.sent is not None:
        return reversal_item(entry_id, ctx.sent, UNDELIVERED_REASON)
    entry = await ctx.services.store.get_entry(entry_id)
    return None if entry is None else entry_reversal_item(ctx.services, entry, UNDELIVERED_REASON)
