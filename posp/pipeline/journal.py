"""The journal steps: every request is recorded with its outcome.

* ``journal_pending`` (financial routes, after the checks) allocates the RRN
  and inserts a pending entry with ``dedupe=True``: the store's unique
  (terminal, batch, trace, direction) index turns a duplicate into
  ``DuplicateTransaction`` → 94, even across switch instances on one database.
* Write-ahead: for a request that goes to the network, the pending entry
  already carries the network STAN (F11) and transmission time (F7) the
  request will be sent with.  From that commit on the entry counts as "may
  have reached the network": if nobody records its answer (the switch died),
  the in-doubt sweeper (``posp.pipeline.recovery``) or the terminal's 0400
  reverses it upstream with a 0420 built from those ids.  An entry without
  them provably never left.
* ``record_outcome`` (every request, after the steps) updates that entry with
  the answer — its state only by compare-and-set from ``pending``, never over
  a state another writer (a step's own CAS, a 0400, the sweeper) has set —
  or, when no entry was made (management messages, declines by the checks),
  inserts one with ``dedupe=False`` so it never blocks a later request.
  A financial step that already wrote the very same outcome with its
  compare-and-set (``store.finish_entry`` in ``posp.pipeline.forward``) is not
  written twice: ``outcome_changes`` is what both write.

PANs are journaled as the 6+4 mask and a keyed hash, never in clear.
"""

from __future__ import annotations

from posp.errors import StoreError
from posp.iso8583 import mask_pan
from posp.log import bind_transaction, get_logger
from posp.network.zone import transmission_time
from posp.pipeline.codes import APPROVED
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext, card_pan
from posp.pipeline.premac import settle_early_mac
from posp.pipeline.risk import pending_hold
from posp.store.api import APPROVED as STATE_APPROVED
from posp.store.api import DECLINED, PENDING, JournalEntry

_log = get_logger("posp.pipeline.journal")


def build_entry(ctx: TxnContext, state: str) -> JournalEntry:
    """A journal entry for the request as it stands (no clear PAN)."""
    message = ctx.message
    if ctx.pan is None:
        ctx.pan = card_pan(message)
    pan = ctx.pan
    amount = message.get(4)
    processing = message.get(3)
    currency = message.get(49)
    terminal_id = message.get(41)
    merchant_id = message.get(42)
    return JournalEntry(
        terminal_id=terminal_id if isinstance(terminal_id, str) else "",
        merchant_id=merchant_id if isinstance(merchant_id, str) else "",
        batch=ctx.f60.batch,
        trace=message.get(11) if isinstance(message.get(11), str) else "",  # type: ignore[arg-type]
        txn_type=ctx.route.name,
        mti=message.mti,
        direction=ctx.route.direction,
        processing_code=processing if isinstance(processing, str) else "",
        amount_minor=int(amount) if isinstance(amount, str) and amount.isdigit() else None,
        currency=currency if isinstance(currency, str) else "156",
        pan_masked=mask_pan(pan) if pan else None,
        pan_hash=ctx.pan_hash(pan) if pan else None,
        card_class=ctx.services.card_class(pan, ctx.card_org),
        card_org=ctx.card_org,
        state=state,
        rrn=ctx.rrn,
        local_date=ctx.local_date,
        local_time=ctx.local_time,
        node_id=f"{ctx.services.settings.node_id:02d}",
        entry_mode=f22[:2] if isinstance(f22 := message.get(22), str) else "",
        network_stan=ctx.network_stan,
        network_f7=ctx.network_f7,
    )


async def assign_network_ids(ctx: TxnContext) -> None:
    """Fix the F11 and F7 the network request will carry: those the early MAC
    gave it (``premac``), else fresh ones.  Only for requests that go upstream."""
    if ctx.route.row.network_mti is None:
        return
    early = await settle_early_mac(ctx)
    if early is not None:
        ctx.network_stan, ctx.network_f7 = str(early.ids[11]), str(early.ids[7])
        return
    ctx.network_stan = await ctx.services.ids.next_stan()
    ctx.network_f7 = transmission_time(ctx.services.settings.network.tz_offset_hours)


async def journal_pending(ctx: TxnContext) -> RC | None:
    """Allocate the RRN and the network ids, and insert the pending entry (94 on a
    duplicate via the codes table).  The entry is the write-ahead record of the
    network request (module docstring)."""
    ctx.rrn = await ctx.services.ids.next_rrn()
    bind_transaction(rrn=ctx.rrn)
    await assign_network_ids(ctx)
    entry = build_entry(ctx, PENDING)
    hold = await pending_hold(ctx)  # the risk hold, kept in the same transaction
    if hold is None:
        ctx.entry_id = await ctx.services.store.insert_entry(entry, dedupe=True)
    else:
        ctx.entry_id = await ctx.services.store.insert_entry(entry, dedupe=True, then=hold)
    ctx.entry = entry
    entry.id = ctx.entry_id
    return None


def _final_state(ctx: TxnContext, code: str) -> str:
    if ctx.final_state is not None:
        return ctx.final_state
    return STATE_APPROVED if code == APPROVED else DECLINED


def outcome_changes(ctx: TxnContext, state: str, code: str) -> dict[str, object]:
    """The journal columns of the outcome: state, answer code and what the steps learnt."""
    changes: dict[str, object] = {
        "state": state,
        "response_code": code,
        "rrn": ctx.rrn,
        "auth_code": ctx.auth_code,
        "settlement_date": ctx.settlement_date,
    }
    if ctx.card_org is not None:
        changes["card_org"] = ctx.card_org
        changes["card_class"] = ctx.services.card_class(ctx.pan, ctx.card_org)
    # Network F7/F11 and the original's id, from the financial steps.
    changes.update(ctx.journal_changes)
    return changes


async def record_outcome(ctx: TxnContext, code: str) -> None:
    """Record the answer; a store failure here is logged, never raised (the
    answer is already decided and the terminal must get it)."""
    state = _final_state(ctx, code)
    store = ctx.services.store
    try:
        if ctx.entry_id is not None:
            changes = outcome_changes(ctx, state, code)
            if ctx.journal_recorded == changes:
                return
            # The state only by compare-and-set: a step that changed it did so with
            # its own CAS, and a 0400 or the sweeper may have moved it since.
            if ctx.final_state is not None or not await store.finish_entry(
                ctx.entry_id, (PENDING,), **changes
            ):
                changes.pop("state")
                await store.update_entry(ctx.entry_id, **changes)
            return
        entry = build_entry(ctx, state)
        entry.response_code = code
        entry.auth_code = ctx.auth_code
        ctx.entry_id = await store.insert_entry(entry, dedupe=False)
    except StoreError as exc:
        _log.error("journal write failed", error_type=type(exc).__name__, response_code=code)
