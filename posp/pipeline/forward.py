"""Forwarding a card transaction to the network and turning the answer into the
terminal's (network-link §3, §7; terminal-link §3, §7).

Invariants:
* Nothing is sent while the link is down or not signed on: 91 at once.
* Every send has a deadline: the network timeout, cut so that it ends before
  the request's own deadline (the timeout path still has to queue the 0420).
* The journal entry leaves ``pending`` exactly once, by compare-and-set: to
  approved / declined on an answer (``store.finish_entry``: the CAS and the
  outcome's columns in one statement), to timed_out on no answer.  When the CAS
  loses, a terminal 0400 reversed the entry while the network was deciding; the
  reversal step left the upstream undo to this step, which holds the sent
  request: an approval (or no answer) is then undone with a queued 0420.
* The network request's MAC may have been computed early, alongside the terminal
  MAC check (``posp.pipeline.premac``); the link reuses it only for the same MAB.
* The terminal's answer is started when the network's response arrives, while
  its MAC is checked (``stage_answer``): both MACs go to the HSM together.  A
  response whose MAC then fails leaves no trace (``unstage_answer``).
* No answer in time (``NetworkTimeout``, including a response whose MAC failed or
  could not be checked, and a network 94 "duplicate transmission", whose first
  outcome the switch cannot know):
  the terminal gets 98, the entry goes to timed_out and a 0420 for the sent
  request is queued durably (SAF) before the answer leaves — the state change
  and the 0420 in one store transaction (``reverse_upstream``).
* The request carries the F11/F7 journaled with the pending entry before it
  left (write-ahead, ``posp.pipeline.journal``), so whoever finds the entry
  unanswered later can reverse it by F90 without the sent message.
* A reservation in the original (``originals``) is released unless the network
  approves the refund, and for a void once its outcome is recorded unless the
  void was approved and its original could not be voided
  (``originals.keeps_reservation``): in one place, ``finish_forwarded``, which
  the engine runs after the steps (outside the deadline), whatever ended them.
* A request the deadline cut off after it was sent (no final state yet) is
  settled there too: timed_out and a queued 0420, as on no answer.
* The network's F7/F11 are journaled with the outcome (voids, completions and
  reversals reference the original through them in F90).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from posp.errors import NetworkTimeout, NetworkUnavailable
from posp.iso8583 import Message
from posp.log import get_logger
from posp.network.link import ResponseMacInvalid
from posp.network.mapping import (
    network_request,
    network_reversal,
    reversal_from_entry,
    terminal_response_fields,
)
from posp.network.saf import saf_payload
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.codes import terminal_code
from posp.pipeline.context import Services, TxnContext
from posp.pipeline.journal import outcome_changes
from posp.pipeline.originals import apply_approval, keeps_reservation, release_reservation
from posp.pipeline.premac import take_early_mac
from posp.pipeline.respond import CARD_ORGS, start_answer
from posp.store.api import (
    APPROVED,
    DECLINED,
    PENDING,
    REVERSED,
    TIMED_OUT,
    JournalEntry,
    SafItem,
)

NO_ANSWER: Final = RC.NO_ANSWER
#: Time kept back from the request deadline for the timeout path (SAF write, answer).
DEADLINE_MARGIN_S: Final = 1.0
_FORWARDED_TO_TERMINAL: Final = (44, 54)

_log = get_logger("posp.pipeline.forward")


def signed_on_link(ctx: TxnContext) -> Any:
    """The network link, or NetworkUnavailable (→ 91) when it cannot carry traffic."""
    link = ctx.services.link
    if link is None or not link.signed_on:
        raise NetworkUnavailable("network link not signed on")
    return link


async def require_link(ctx: TxnContext) -> RC | None:
    """91 at once when the network is unreachable (before any HSM work)."""
    signed_on_link(ctx)
    return None


def network_timeout_s(ctx: TxnContext) -> float:
    """The network deadline: the link's timeout, ended before the request's deadline."""
    settings = ctx.services.settings
    deadline_s = settings.limits.request_deadline_s
    margin_s = min(DEADLINE_MARGIN_S, deadline_s / 10)
    left_s = deadline_s - (time.perf_counter() - ctx.started_s) - margin_s
    if left_s <= 0:
        raise TimeoutError("no time left to forward the request")
    return min(settings.network.timeout_s, left_s)


def reversal_item(entry_id: int, sent: Message, reason: str) -> SafItem:
    """The SAF item of the 0420 for ``sent`` (the request as it went upstream)."""
    return SafItem(entry_id=entry_id, payload=saf_payload(network_reversal(sent, reason)))


def entry_reversal_item(services: Services, entry: JournalEntry, reason: str) -> SafItem | None:
    """The SAF item of a 0420 rebuilt from the journal alone (the sent request is
    gone: the switch that sent it died); None when the entry never got network ids."""
    assert entry.id is not None
    network = services.settings.network
    reversal = reversal_from_entry(
        entry, reason, acquirer_id=network.acquirer_id, forwarding_id=network.forwarding_id
    )
    return None if reversal is None else SafItem(entry_id=entry.id, payload=saf_payload(reversal))


async def kick_saf(services: Services) -> None:
    if services.saf is not None:
        await services.saf.kick()


async def queue_reversal(services: Services, entry_id: int, sent: Message, reason: str) -> None:
    """Durably queue a 0420 for ``sent`` (idempotent per entry) and wake the forwarder."""
    await services.store.enqueue_saf(reversal_item(entry_id, sent, reason))
    await kick_saf(services)


async def reverse_upstream(
    services: Services,
    entry_id: int,
    from_states: tuple[str, ...],
    to_state: str,
    item: SafItem,
) -> bool:
    """Move the entry to ``to_state`` and queue its 0420 ``item`` in one transaction
    (the store's ``reverse_and_queue``); True when this caller made the change.
    When another caller moved it first, the 0420 is ensured anyway (idempotent):
    an entry that may have reached the network never ends without one."""
    won = await services.store.reverse_and_queue(entry_id, from_states, to_state, item)
    if not won:
        await services.store.enqueue_saf(item)
    await kick_saf(services)
    return won


def _journal_changes(ctx: TxnContext) -> dict[str, object]:
    changes = ctx.journal_changes
    return changes


def note_network_ids(ctx: TxnContext, sent: Message) -> None:
    """Journal F7/F11 of the sent request (and the original's id) with the outcome."""
    changes = _journal_changes(ctx)
    stan, f7 = sent.get(11), sent.get(7)
    if isinstance(stan, str) and isinstance(f7, str):
        changes["network_stan"] = stan
        changes["network_f7"] = f7
    if ctx.original is not None and ctx.original.id is not None:
        changes["original_id"] = ctx.original.id


def build_request(ctx: TxnContext) -> Message:
    assert ctx.merchant is not None and ctx.rrn is not None
    return network_request(
        ctx.route.row,
        ctx.message,
        merchant=ctx.merchant,
        pin_block_zpk=ctx.pin_block_zpk,
        track2=ctx.track2,
        track3=ctx.track3,
        rrn=ctx.rrn,
        original=ctx.original,
        pan=ctx.pan,
        receiving_pan=ctx.receiving_pan,
    )


async def forward(ctx: TxnContext) -> RC | None:
    """Send the request upstream and return the terminal's response code."""
    link = signed_on_link(ctx)
    request = build_request(ctx)
    if ctx.network_stan is not None and ctx.network_f7 is not None:
        request[11], request[7] = ctx.network_stan, ctx.network_f7  # as journaled (write-ahead)
    early = await take_early_mac(ctx)  # before the request counts as sent
    timeout_s = network_timeout_s(ctx)
    ctx.timeout_code = NO_ANSWER
    ctx.sent = request
    ctx.unsettled = request  # settled by on_answer / on_no_answer / finish_forwarded
    try:
        response = await link.send(
            request,
            timeout_s=timeout_s,
            on_arrival=lambda arrived: stage_answer(ctx, arrived),
            early=early,
        )
    except NetworkTimeout as exc:  # sent, no (trustworthy) answer
        unstage_answer(ctx)
        note_network_ids(ctx, request)
        reason = RC.MAC_FAILED if isinstance(exc, ResponseMacInvalid) else NO_ANSWER
        await on_no_answer(ctx, request, reason)
        return NO_ANSWER
    except asyncio.CancelledError:  # the deadline: sent or not, finish_forwarded reverses
        unstage_answer(ctx)  # the 98 answer must not carry an unchecked response's fields
        raise
    except Exception:
        # The link raises anything else only before the request is on the wire.
        ctx.unsettled = None
        raise
    note_network_ids(ctx, request)
    if response.get(39) == RC.DUPLICATE:
        # Our STANs never repeat, so the network saw this request before: its first
        # outcome is unknown here.  As no answer: 98 and a reversal.
        unstage_answer(ctx)
        await on_no_answer(ctx, request, NO_ANSWER)
        return NO_ANSWER
    return await on_answer(ctx, request, response)


async def on_no_answer(ctx: TxnContext, sent: Message, reason: str) -> None:
    """98: timed_out (unless a 0400 reversed it meanwhile) and a queued 0420."""
    assert ctx.entry_id is not None
    services = ctx.services
    if not ctx.route.row.moves_money:  # a balance inquiry: no 0420
        if ctx.final_state is None:
            won = await services.store.transition(ctx.entry_id, (PENDING,), TIMED_OUT)
            ctx.final_state = TIMED_OUT if won else REVERSED
    elif ctx.final_state is None:  # a rerun by finish_forwarded keeps the first outcome
        item = reversal_item(ctx.entry_id, sent, reason)
        won = await reverse_upstream(services, ctx.entry_id, (PENDING,), TIMED_OUT, item)
        if not won:
            # Approved by this very request's outcome write, which committed although
            # the deadline cancelled its caller (a commit cannot be taken back): the
            # terminal is not told, so the approval is reversed with the 0420.
            await reverse_upstream(services, ctx.entry_id, (APPROVED,), REVERSED, item)
        ctx.final_state = TIMED_OUT if won else REVERSED
    else:
        await queue_reversal(services, ctx.entry_id, sent, reason)  # idempotent
    ctx.unsettled = None
    _log.warning("network did not answer; reversal queued", reason=reason)


def apply_response(ctx: TxnContext, response: Message) -> RC:
    """Take the network's answer fields into ``ctx``; returns the terminal's code."""
    fields = terminal_response_fields(response)
    code = terminal_code(fields[39])
    if code == RC.APPROVED:
        ctx.auth_code = fields.get(38)
    ctx.settlement_date = fields.get(15, ctx.settlement_date)
    f63 = fields.get(63, "")
    if f63[:3] in CARD_ORGS:  # 63.1; 63.2 only where the row names the holder
        ctx.card_org = f63[:3]
        ctx.response[63] = f63 if ctx.route.row.answer_names_holder else f63[:3]
    for n in _FORWARDED_TO_TERMINAL:
        if n in fields:
            ctx.response[n] = fields[n]
    chip_data = response.get(55)  # the issuer's F55 (tag 91, scripts), binary
    if isinstance(chip_data, bytes):
        ctx.response[55] = chip_data
    return code


def stage_answer(ctx: TxnContext, response: Message) -> None:
    """The network's answer arrived and its MAC is being checked: take its fields and
    start the terminal's answer now, so the answer's MAC (TAK) goes to the HSM with
    that check (ZAK) in one write.  ``unstage_answer`` undoes it if the check fails."""
    before = (ctx.auth_code, ctx.settlement_date, ctx.card_org, dict(ctx.response))
    code = apply_response(ctx, response)
    ctx.staged_answer = (response, code, before)
    start_answer(ctx, code)


def unstage_answer(ctx: TxnContext) -> None:
    """Forget a staged answer whose response then failed its MAC check (or never came)."""
    staged, ctx.staged_answer = ctx.staged_answer, None
    if staged is None:
        return
    ctx.auth_code, ctx.settlement_date, ctx.card_org, ctx.response = staged[2]
    ctx.early_answer = None


async def on_answer(ctx: TxnContext, sent: Message, response: Message) -> RC:
    """Record the network's decision and prepare the terminal's answer fields."""
    assert ctx.entry_id is not None
    staged, ctx.staged_answer = ctx.staged_answer, None
    code: RC
    if staged is not None and staged[0] is response:
        code = staged[1]
    else:
        code = apply_response(ctx, response)
        start_answer(ctx, code)  # its MAC is computed while the outcome commits
    state = APPROVED if code == RC.APPROVED else DECLINED
    changes = outcome_changes(ctx, state, code)
    if not await ctx.services.store.finish_entry(ctx.entry_id, (PENDING,), **changes):
        ctx.final_state = REVERSED
        if code == RC.APPROVED:
            await queue_reversal(ctx.services, ctx.entry_id, sent, NO_ANSWER)
        ctx.unsettled = None
        _log.info("answer arrived after the entry was reversed", response_code=code)
        # Reversed upstream already (a 0400 or the sweeper won): the terminal must
        # not count it, whatever the network said.
        return NO_ANSWER if code == RC.APPROVED else code
    ctx.final_state = state
    ctx.unsettled = None
    ctx.journal_recorded = changes  # record_outcome need not write it again
    if code == RC.APPROVED:
        await apply_approval(ctx)
    return code


async def finish_forwarded(ctx: TxnContext) -> None:
    """After the steps, outside the deadline: settle a sent request the deadline
    cut off (timed_out + queued 0420) and release the reservation in the original
    unless ``keeps_reservation`` (an approved refund; an approved void whose
    original did not move).  Idempotent; a no-op for routes that forward nothing."""
    sent = ctx.unsettled
    if sent is not None:
        note_network_ids(ctx, sent)
        await on_no_answer(ctx, sent, NO_ANSWER)
    if not keeps_reservation(ctx):
        await release_reservation(ctx)
