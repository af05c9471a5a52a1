"""The risk step (terminal-link.md §11) and the release of its holds.

``check_risk`` runs for the rows flagged ``risk_checked`` (``posp.txn``), after
the terminal checks and the MAC check and before the journal's pending entry:
it takes the ruleset in force ONCE (``RulesetHolder.current``), reads the
counters the rules need in one snapshot, evaluates purely, and answers the
declining rule's code (61/65/59/57/45/34).  The request's velocity hold is
then reserved with one conditional check-and-add IN the pending journal
entry's transaction (``pending_hold``, passed by ``journal_pending`` to
``insert_entry(then=...)``: one writer job on SQLite, one transaction on
PostgreSQL) and kept there, with the decisions, keyed by the entry;
``hold_velocity`` (before forwarding) reads its result: a hold another
instance beat to the last of a limit answers that limit's code.

Invariants:
* The card is the journal's keyed PAN hash (``Services.pan_hash``), never the PAN.
* A hold is added and kept with its entry in one transaction (the entry, the
  counters and the record commit together or not at all), and given back exactly once
  (``SqlRiskRecords.take_hold`` is a compare-and-set) whenever its request does
  not end approved — a network decline, a 98/96, an undelivered approval — and
  later when it is voided or reversed (a terminal 0400, a switch 0420, the
  in-doubt sweeper); a reversed void counts it again (``restore_hold``).
* An approved refund gives its amount back to the ``net_of_refunds`` caps.
* Flag and shadow decisions never change the answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from posp.errors import PospError
from posp.log import get_logger
from posp.pipeline.cardsec import decrypt_tracks, tracks_encrypted
from posp.pipeline.codes import APPROVED, response_code
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import Services, TxnContext, card_pan
from posp.pipeline.lifecycle import note_approved
from posp.risk.counters import CounterAdd
from posp.risk.engine import CompiledRuleset, Evaluation, release
from posp.risk.inputs import RiskInput, TmsCaps
from posp.risk.metrics import RiskMetrics
from posp.risk.reload import RulesetHolder
from posp.risk.ruleset import load_ruleset
from posp.store.api import APPROVED as STATE_APPROVED
from posp.txn import TxnType

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from posp.risk.inputs import Decision
    from posp.risk.lifecycle import TerminalRiskState
    from posp.settings import Settings
    from posp.store.risk_counters import SqlRiskCounters
    from posp.store.risk_records import HoldWithEntry, SqlRiskRecords

_log = get_logger("posp.pipeline.risk")

#: F22 entry modes of a chip card read by magstripe after a chip failure.
FALLBACK_ENTRY_MODES = ("80", "92")


class TerminalCapsSource(Protocol):
    """What ``posp.tms.service.TerminalManagement`` offers: a terminal's caps."""

    async def terminal_caps(self, terminal_id: str) -> Any: ...


class RiskCapsFromTms:
    """The terminal's TMS parameters (F62 37/38/39) as the risk rules' caps."""

    def __init__(self, source: TerminalCapsSource) -> None:
        self._source = source

    async def caps_for(self, terminal_id: str) -> TmsCaps | None:
        caps = await self._source.terminal_caps(terminal_id)
        return TmsCaps(caps.purchase_minor, caps.refund_minor, caps.transfer_minor)


class TmsCapsPort(Protocol):
    """A terminal's single-transaction caps from its TMS parameters (F62 37/38/39);
    the TMS wiring provides it, None = no caps of its own."""

    async def caps_for(self, terminal_id: str) -> TmsCaps | None: ...


@dataclass(slots=True)
class RiskService:
    """What the risk step needs; one per switch process (``Services.risk``)."""

    holder: RulesetHolder
    counters: SqlRiskCounters
    records: SqlRiskRecords
    metrics: RiskMetrics
    dormant_after_days: int
    tms_caps: TmsCapsPort | None = None
    #: Terminal lifecycle states read for transactions: (state, monotonic time read).
    terminal_states: dict[str, tuple[TerminalRiskState, float]] = field(default_factory=dict)


@dataclass(slots=True)
class RiskOutcome:
    """The risk step's result on one request (``TxnContext.risk``)."""

    ruleset: CompiledRuleset  # the version this request took
    inp: RiskInput
    evaluation: Evaluation
    local_day: dt.date
    refused: Decision | None = None  # the store refused the hold (a lost race)
    held: tuple[CounterAdd, ...] = ()
    kept: bool = False  # the record (and hold) is stored with the journal entry
    snapshot_keys: frozenset[str] = frozenset()  # counters that existed at the snapshot
    pending: HoldWithEntry | None = None  # the hold run with the pending entry's insert
    decisions: list[dict[str, object]] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.refused is not None:
            return "race"
        if self.evaluation.decline is not None:
            return "decline"
        return "flag" if self.evaluation.flagged else "pass"


async def risk_input(ctx: TxnContext, service: RiskService) -> RiskInput:
    """The request as the rules see it (no PAN: its keyed hash and BIN)."""
    message = ctx.message
    pan = ctx.pan or ""
    amount = message.get(4)
    entry_mode = message.get(22)
    mode = entry_mode if isinstance(entry_mode, str) else ""
    terminal_id = ctx.text(41)
    caps = await service.tms_caps.caps_for(terminal_id) if service.tms_caps else None
    return RiskInput(
        txn_type=ctx.route.name,
        amount_minor=int(amount) if isinstance(amount, str) and amount.isdigit() else 0,
        card_hash=ctx.pan_hash(pan) if pan else "",
        bin=pan[:6],
        terminal_id=terminal_id,
        merchant_id=ctx.text(42),
        mcc=ctx.merchant.category_code if ctx.merchant is not None else "",
        local_time=ctx.now.replace(tzinfo=None),
        currency=str(message.get(49) or "156"),
        # Seam for F59 A2 (terminal identity, wired by the TMS work): the location
        # region and the device identity stay unknown until it is in the context.
        terminal_region="",
        entry_mode=mode,
        fallback=mode.startswith(FALLBACK_ENTRY_MODES),
        tms_caps=caps or TmsCaps(),
    )


async def check_risk(ctx: TxnContext) -> RC | None:
    """Evaluate the rules and reserve the hold (module docstring)."""
    service = ctx.services.risk
    if service is None or not ctx.route.row.risk_checked:
        return None
    ruleset = service.holder.current  # once per request: one version per decision
    if ctx.pan is None:
        ctx.pan = card_pan(ctx.message)
        if ctx.pan is None and tracks_encrypted(ctx):
            await decrypt_tracks(ctx)  # the card's hash is needed before the journal
    inp = await risk_input(ctx, service)
    prepared = ruleset.prepare(inp)
    snapshot = await service.counters.snapshot(prepared.keys)
    evaluation = ruleset.evaluate_prepared(prepared, snapshot)
    service.metrics.observe(evaluation)
    outcome = RiskOutcome(ruleset, inp, evaluation, ctx.now.date())
    outcome.snapshot_keys = frozenset(snapshot)
    outcome.decisions = [d.as_record() for d in evaluation.decisions]
    ctx.risk = outcome
    if evaluation.decline is not None:
        return await _declined(ctx, evaluation.decline)
    return None


async def _declined(ctx: TxnContext, decision: Decision) -> RC:
    """The rule's code; the request gets an RRN so ``posp risk explain`` finds it."""
    ctx.rrn = await ctx.services.ids.next_rrn()
    _log.info("risk decline", rule=decision.rule_id, response_code=decision.code.value)
    code = response_code(decision.code.value)
    return code if code is not None else RC.SUSPECTED_FRAUD  # RiskCode is a subset of RC


async def pending_hold(ctx: TxnContext) -> HoldWithEntry | None:
    """The hold to check-and-add, and keep, in the pending entry's transaction
    (``journal_pending`` passes it to ``insert_entry``); None without one.  Call
    it with the RRN allocated (the record carries it)."""
    from posp.store.risk_records import HoldWithEntry

    outcome = ctx.risk
    service = ctx.services.risk
    if outcome is None or service is None or outcome.evaluation.decline is not None:
        return None
    hold = outcome.evaluation.hold
    if not hold:
        return None
    # Missing counter rows are created by the hold's own transaction (SQLite: the
    # upsert; PostgreSQL: the group commit of holds, ``posp.store.pg_holds``).
    fields = _record_fields(ctx, outcome, hold)
    del fields["hold"]
    outcome.pending = HoldWithEntry(hold, fields)
    if service.counters.on_sqlite:
        outcome.pending.prepare_sqlite()
    return outcome.pending


async def hold_velocity(ctx: TxnContext) -> RC | None:
    """The hold's result: reserved and kept with the pending entry in its
    transaction (``pending_hold``), before forwarding (a crash after this leaves
    it findable by the in-doubt sweeper); a hold another instance beat to a limit
    answers that limit's code.  Should that transaction have found a counter row
    missing after all (purged meanwhile), the hold is made here the old way."""
    outcome = ctx.risk
    service = ctx.services.risk
    if outcome is None or service is None or ctx.entry_id is None:
        return None
    hold = outcome.evaluation.hold
    if not hold:
        return None
    result = outcome.pending.result if outcome.pending is not None else None
    if result is None:
        missing = [add for add in hold if add.key not in outcome.snapshot_keys]
        if missing:  # first use of these counters: their rows, so the add applies at once
            await service.counters.create_missing(missing)
        result = await service.records.hold_and_keep(
            service.counters, ctx.entry_id, **_record_fields(ctx, outcome, hold)
        )
    if not result.applied:
        refused = outcome.evaluation.refused_by(result)
        service.metrics.observe_refusal(refused)
        outcome.refused = refused
        outcome.decisions.append(refused.as_record())
        _log.info("risk hold refused", rule=refused.rule_id, response_code=refused.code.value)
        code = response_code(refused.code.value)
        return code if code is not None else RC.SUSPECTED_FRAUD
    outcome.held, outcome.kept = hold, True
    return None


def _record_fields(
    ctx: TxnContext, outcome: RiskOutcome, hold: tuple[CounterAdd, ...]
) -> dict[str, Any]:
    return {
        "rrn": ctx.rrn,
        "terminal_id": ctx.text(41),
        "local_day": outcome.local_day,
        "ruleset_version": outcome.evaluation.ruleset_version,
        "outcome": outcome.outcome,
        "flagged": outcome.evaluation.flagged,
        "decisions": outcome.decisions,
        "hold": hold,
    }


async def _keep(ctx: TxnContext, outcome: RiskOutcome, entry_id: int) -> None:
    """The record of a request without a kept hold (declined, flagged, refused)."""
    service = ctx.services.risk
    assert service is not None
    await service.records.keep(entry_id, **_record_fields(ctx, outcome, ()))
    outcome.kept = True


async def finish_risk(ctx: TxnContext, code: str) -> None:
    """After the outcome is journaled: give back the hold of a request that did
    not end approved, record a decision not kept yet, and apply what an approved
    void, reversal or refund changes in the counters."""
    service = ctx.services.risk
    if service is None:
        return
    outcome = ctx.risk
    approved = code == APPROVED and ctx.final_state in (None, STATE_APPROVED)
    if outcome is not None:
        if outcome.held and not approved and ctx.entry_id is not None:
            await release_hold(ctx.services, ctx.entry_id)
        if not outcome.kept and ctx.entry_id is not None and outcome.decisions:
            await _keep(ctx, outcome, ctx.entry_id)
    if not approved:
        return
    row = ctx.route.row
    if row.card:
        await note_approved(ctx)
    if row.on_approval is not None and ctx.original is not None and ctx.original.id is not None:
        await release_hold(ctx.services, ctx.original.id)  # a void gives the original's back
    if row.txn_type is TxnType.REFUND and outcome is not None:
        refund = outcome.ruleset.refund_adds(outcome.inp)
        if refund:
            await service.counters.apply(refund)


async def restore_hold(services: Services, entry_id: int) -> None:
    """Count again the hold of ``entry_id`` given back by a void that was then
    reversed (the purchase stands again), whatever the caps say now."""
    service = services.risk
    if service is None:
        return
    hold = await service.records.restore_hold(entry_id)
    if hold:
        await service.counters.apply(hold)
        _log.info("risk hold restored", entry=entry_id)


async def release_hold(services: Services, entry_id: int) -> None:
    """Give back the hold kept with ``entry_id`` (once; no-op without one)."""
    service = services.risk
    if service is None:
        return
    hold = await service.records.take_hold(entry_id)
    if hold:
        await service.counters.apply(release(hold))
        _log.info("risk hold released", entry=entry_id)


async def purge_counters(service: RiskService, services: Services, interval_s: float) -> None:
    """Delete expired velocity-counter rows, and look for counters of an older
    version (:func:`check_counter_layout`), now and every ``interval_s`` (a task
    of the switch; a store failure is logged and retried next time)."""
    while True:
        try:
            gone = await service.counters.purge_expired(services.local_now().date())
            if gone:
                _log.info("expired risk counters purged", rows=gone)
            await check_counter_layout(service)
        except PospError as exc:
            _log.warning("risk counter purge failed", error_type=type(exc).__name__)
        await asyncio.sleep(interval_s)


async def check_counter_layout(service: RiskService) -> int:
    """Counters keyed in the layout before migration 0033, found after it ran,
    were written by an older posp still running on this database: its cards'
    totals are kept apart from this version's, so limits are not exact until it
    stops.  Logged as an error and shown as ``posp_risk_legacy_counter_rows``;
    how many were found (at most 1,000)."""
    rows = await service.counters.legacy_rows()
    service.metrics.legacy_counter_rows(rows)
    if rows:
        _log.error(
            "risk counters written in the layout before migration 0033: a process of an"
            " older posp version is running on this database; stop it (README, Upgrading)",
            rows=rows,
        )
    return rows


def open_risk(
    settings: Settings, store: object, registry: CollectorRegistry | None
) -> RiskService | None:
    """The risk service over the switch's store, or None when ``risk.enabled`` is
    false (or the store is not a SQL store: a test double).  A ruleset that does
    not load is a ConfigError here: the switch never starts without its rules."""
    from posp.store.risk_counters import SqlRiskCounters
    from posp.store.risk_records import SqlRiskRecords
    from posp.store.sql_store import SqlStore

    risk = settings.risk
    if not risk.enabled or not isinstance(store, SqlStore):
        return None
    holder = RulesetHolder(load_ruleset(risk.ruleset_path), risk.ruleset_path)
    _log.info("risk rules on", ruleset_version=holder.current.version)
    return RiskService(
        holder,
        SqlRiskCounters(store),
        SqlRiskRecords(store),
        RiskMetrics(registry),
        risk.dormant_after_days,
    )
