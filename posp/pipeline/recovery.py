"""Resolving what a dead switch — or a dead HSM — left in doubt.

Two kinds of work wait here, found in the store, so that a restart or another
instance on the same database finishes them:

* **In-doubt entries.**  A financial entry is journaled ``pending`` with the
  network ids its request will carry before the request leaves (write-ahead,
  ``posp.pipeline.journal``).  One still ``pending`` long after its request's
  deadline (``limits.request_deadline_s`` + the server's answer grace +
  ``recovery.in_doubt_grace_s``; a deadline fires up to a tick of
  ``posp.deadline``, 50 ms, late) belongs to a switch that died between sending
  and recording the answer.  It may have reached the network, so it moves to
  ``timed_out`` with a 0420 rebuilt from the journal, in one transaction
  (``store.reverse_and_queue``); the network's reversal is idempotent and an
  original it never saw is declined when it comes.  Never a silent state
  change: a balance inquiry (no money) and an entry without network ids
  (it provably never left) just time out.  Its risk hold and, for a refund or
  void, its reservation in its original are given back with it (once).  So is
  a reservation a refund or void that ended not approved still carries
  because its release failed (store trouble).  A terminal 0400 the switch died
  handling got no answer, so its terminal sends it again; its own entry is
  closed 00 when its original was reversed (by the repeat, the switch's own
  0420 or this sweep) and 96 otherwise.
* **Kept 0400s.**  A terminal reversal whose MAC the HSM could not check was
  journaled and kept with the TAK it was made under (``reversal.verify_or_defer``).
  Once the HSM answers, its MAC is checked: verified → applied exactly as if it
  had just arrived; not verified → its journal entry says A0 and nothing is
  undone.  HSM still failing → tried again later (doubling delay, capped).

Invariants: every change is a compare-and-set or idempotent, so two instances
sweeping at once, or a sweep racing a terminal's 0400, never reverse twice.
The sweeper runs at start and every ``recovery.sweep_interval_s``; a failed
pass is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from typing import Final

from posp.errors import DecodeError, HsmError, StoreError
from posp.hsm.api import KEY_TAK, MAC_ALG_CUP_ECB
from posp.iso8583 import TerminalFrame, decode_terminal, terminal_mab
from posp.iso8583.fields import Field60
from posp.log import get_logger
from posp.pipeline import checks
from posp.pipeline.codes import ResponseCode
from posp.pipeline.context import Services, TxnContext
from posp.pipeline.engine import ANSWER_GRACE_S
from posp.pipeline.forward import NO_ANSWER, entry_reversal_item, reverse_upstream
from posp.pipeline.originals import release_entry_reservation
from posp.pipeline.reversal import reverse_original
from posp.pipeline.risk import release_hold
from posp.pipeline.routes import find_route
from posp.store.api import (
    APPROVED,
    DECLINED,
    PENDING,
    REVERSED,
    TIMED_OUT,
    DeferredReversal,
    JournalEntry,
    OpenEntries,
)
from posp.txn import TXN_TYPES, TxnType, txn_row

MAX_DEFERRED_BACKOFF_S: Final = 60.0
BATCH: Final = 100
STRANDED_PAGES: Final = 10  # of BATCH rows each, per pass
ORIGINAL: Final = "original"
REVERSAL: Final = TXN_TYPES[TxnType.REVERSAL].direction

_log = get_logger("posp.pipeline.recovery")


@dataclass(slots=True)
class SweepResult:
    timed_out: int = 0  # orphaned entries reversed upstream (or just timed out)
    reversals_applied: int = 0  # kept 0400s verified and applied
    reversals_refused: int = 0  # kept 0400s whose MAC did not verify
    reversals_waiting: int = 0  # kept 0400s the HSM still could not check
    reversals_closed: int = 0  # 0400 entries a dead switch left pending
    others_closed: int = 0  # advices and TC uploads a dead switch left pending
    reservations_released: int = 0  # left on ended refunds/voids by a failed release
    in_doubt: int = 0  # pending entries past the cut-off this pass found (at most BATCH)
    unresolved: int = 0  # entries, reservations, kept 0400s whose resolution raised
    open_entries: OpenEntries | None = None  # counted after the pass (None: not read)


class InDoubtResolver:
    """Sweeps the store for in-doubt entries and kept 0400s (module docstring)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._task: asyncio.Task[None] | None = None
        services.metrics.recovery_interval.set(services.settings.recovery.sweep_interval_s)

    @property
    def in_doubt_after_s(self) -> float:
        settings = self._services.settings
        return (
            settings.limits.request_deadline_s + ANSWER_GRACE_S + settings.recovery.in_doubt_grace_s
        )

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="in-doubt-sweeper")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        interval_s = self._services.settings.recovery.sweep_interval_s
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # the sweeper outlives any one failure
                _log.error("in-doubt sweep failed", error_type=type(exc).__name__)
            await asyncio.sleep(interval_s)

    async def sweep(self, now: dt.datetime | None = None) -> SweepResult:
        """One pass over both kinds of work, recorded in the switch's metrics
        (``posp_recovery_*``, ``posp_journal_*``); ``now`` (UTC) is for tests.
        What a failing pass resolved before it failed is counted too; its gauges
        and the time of the last success are left as the last good pass set them."""
        metrics = self._services.metrics
        result = SweepResult()
        try:
            await self._sweep(now or dt.datetime.now(dt.UTC), result)
        except Exception:
            metrics.recovery_sweeps.labels("failed").inc()
            raise
        else:
            metrics.recovery_sweeps.labels("ok").inc()
            metrics.recovery_last_success.set(time.time())
            metrics.recovery_in_doubt.set(result.in_doubt)
            metrics.recovery_waiting.set(result.reversals_waiting)
            if result.open_entries is not None:
                metrics.journal_pending.set(result.open_entries.pending)
                metrics.journal_open_rows.set(result.open_entries.listed)
        finally:
            for outcome, count in (
                ("timed_out", result.timed_out),
                ("reversal_applied", result.reversals_applied),
                ("reversal_refused", result.reversals_refused),
                ("reversal_closed", result.reversals_closed),
                ("other_closed", result.others_closed),
                ("reservation_released", result.reservations_released),
            ):
                if count:
                    metrics.recovery_resolved.labels(outcome).inc(count)
            if result.unresolved:
                metrics.recovery_unresolved.inc(result.unresolved)
            if (
                result.timed_out
                or result.reversals_applied
                or result.reversals_refused
                or result.reservations_released
            ):
                _log.warning(
                    "in-doubt work resolved",
                    timed_out=result.timed_out,
                    reservations_released=result.reservations_released,
                    reversals_applied=result.reversals_applied,
                    reversals_refused=result.reversals_refused,
                )
        return result

    async def _sweep(self, now: dt.datetime, result: SweepResult) -> None:
        cutoff = now - dt.timedelta(seconds=self.in_doubt_after_s)
        stale = await self._services.store.in_doubt_entries(cutoff, BATCH)
        result.in_doubt = len(stale)
        # Originals first: a 0400 cut off mid-way is judged by its original's state.
        for entry in sorted(stale, key=lambda e: e.direction != ORIGINAL):
            try:
                await self._resolve(entry, result)
            except Exception as exc:  # one bad row must not stop the others
                result.unresolved += 1
                _log.error("in-doubt entry not resolved", entry=entry.id, error=type(exc).__name__)
        await self._release_stranded(cutoff, result)
        for kept in await self._services.store.due_deferred(now, BATCH):
            try:
                await self._retry_kept(kept, now, result)
            except Exception as exc:
                result.unresolved += 1
                _log.error(
                    "kept reversal not resolved", entry=kept.entry_id, error=type(exc).__name__
                )
        try:  # after the in-doubt read, which empties journal_open of ended entries
            result.open_entries = await self._services.store.open_entries()
        except StoreError as exc:  # the pass's work is done; only the gauge waits
            _log.warning("open journal entries not counted", error_type=type(exc).__name__)

    async def _release_stranded(self, cutoff: dt.datetime, result: SweepResult) -> None:
        """Reservations left on entries that ended not approved; pages past rows
        whose release fails (each logged, counted unresolved), so they never hide
        the others."""
        after = None
        for _ in range(STRANDED_PAGES):
            page = await self._services.store.stranded_reservations(cutoff, BATCH, after)
            for ended in page:
                try:
                    result.reservations_released += await release_entry_reservation(
                        self._services, ended
                    )
                except Exception as exc:
                    result.unresolved += 1
                    _log.error("reservation not released", entry=ended.id, error=type(exc).__name__)
            if len(page) < BATCH:
                break
            after = page[-1]

    async def _resolve(self, entry: JournalEntry, result: SweepResult) -> None:
        if entry.direction == ORIGINAL:
            await self._time_out(entry, result)
        elif entry.direction == REVERSAL:
            result.reversals_closed += await self._close_reversal(entry)
        else:  # an advice or TC upload cut off: its terminal sends it again
            result.others_closed += await self._close_unanswered(entry)

    async def _time_out(self, entry: JournalEntry, result: SweepResult) -> None:
        """Counted timed out once its state moved (and its 0420 is queued), even
        should giving back its hold or reservation then fail; that failure is
        counted unresolved too.  The reservation is given back whether or not the
        hold was (should it fail, a later stranded-reservation read gives it back);
        a hold whose release failed is not retried by the sweep: it stays counted
        in its card's limits until their period ends, or until the terminal's
        0400 for the entry releases it."""
        assert entry.id is not None
        services = self._services
        row = txn_row(entry.txn_type)
        moves_money = row is not None and row.moves_money
        item = entry_reversal_item(services, entry, NO_ANSWER) if moves_money else None
        if item is None:  # no money (a balance inquiry), or it provably never left
            won = await services.store.transition(entry.id, (PENDING,), TIMED_OUT)
        else:
            won = await reverse_upstream(services, entry.id, (PENDING,), TIMED_OUT, item)
        if won:
            result.timed_out += 1
            try:
                await release_hold(services, entry.id)  # its risk hold, kept before sending
            finally:
                await release_entry_reservation(services, entry)  # a refund's or void's

    async def _close_reversal(self, entry: JournalEntry) -> bool:
        """A 0400 the switch died handling: it got no answer, so its terminal sends it
        again (and the repeat does the idempotent work).  Its own entry is closed by
        what became of its original: reversed or timed out upstream → 00, else 96."""
        assert entry.id is not None
        store = self._services.store
        original = await store.find_by_trace(entry.terminal_id, entry.batch, entry.trace)
        undone = original is not None and original.state in (REVERSED, TIMED_OUT)
        code = ResponseCode.APPROVED if undone else ResponseCode.MALFUNCTION
        state = APPROVED if undone else DECLINED
        changes: dict[str, object] = {"state": state, "response_code": str(code)}
        if original is not None and original.id is not None:
            changes["original_id"] = original.id
        return await store.finish_entry(entry.id, (PENDING,), **changes)

    async def _close_unanswered(self, entry: JournalEntry) -> bool:
        """A request that moves no money, cut off before its answer: 96 (its repeat,
        journaled as the same entry, records its own outcome)."""
        assert entry.id is not None
        changes = {"state": DECLINED, "response_code": str(ResponseCode.MALFUNCTION)}
        return await self._services.store.finish_entry(entry.id, (PENDING,), **changes)

    async def _retry_kept(
        self, kept: DeferredReversal, now: dt.datetime, result: SweepResult
    ) -> None:
        store = self._services.store
        try:
            frame = decode_terminal(kept.body)
        except DecodeError:  # it decoded when it arrived: the row is damaged
            _log.error("kept reversal does not decode", entry=kept.entry_id)
            await self._refuse(kept, "30")
            result.reversals_refused += 1
            return
        mac = frame.message.get(64)
        try:
            verified = isinstance(mac, bytes) and await self._services.hsm.verify_mac(
                KEY_TAK, kept.tak_lmk, terminal_mab(kept.body), mac, algorithm=MAC_ALG_CUP_ECB
            )
        except HsmError:
            delay_s = min(
                MAX_DEFERRED_BACKOFF_S,
                self._services.settings.recovery.deferred_retry_s * 2 ** min(kept.attempts, 10),
            )
            await store.reschedule_deferred(kept.entry_id, now + dt.timedelta(seconds=delay_s))
            result.reversals_waiting += 1
            return
        if not verified:
            _log.warning("kept reversal's MAC did not verify; not applied", entry=kept.entry_id)
            await self._refuse(kept, "A0")
            result.reversals_refused += 1
            return
        if not await self._apply(kept, frame):
            await self._refuse(kept, "97")
            result.reversals_refused += 1
            return
        await store.finish_deferred(kept.entry_id)
        result.reversals_applied += 1

    async def _apply(self, kept: DeferredReversal, frame: TerminalFrame) -> bool:
        """Run the reversal as if the 0400 had just arrived (its MAC now verified);
        False when its terminal or merchant is no longer registered."""
        services = self._services
        text = frame.message.get(60)
        f60 = Field60.parse(text if isinstance(text, str) else "")
        route = find_route(frame.message, f60)
        if route is None:
            raise StoreError("kept reversal no longer routes")
        ctx = TxnContext(
            kept.body, frame, route, services, f60, services.local_now(), time.perf_counter()
        )
        ctx.entry_id = kept.entry_id
        for step in (checks.load_terminal, checks.check_merchant):
            if await step(ctx) is not None:
                _log.warning("kept reversal's terminal or merchant is gone", entry=kept.entry_id)
                return False
        await reverse_original(ctx)
        if ctx.original is not None:
            await services.store.update_entry(kept.entry_id, original_id=ctx.original.id)
        return True

    async def _refuse(self, kept: DeferredReversal, code: str) -> None:
        store = self._services.store
        await store.update_entry(kept.entry_id, state=DECLINED, response_code=code)
        await store.finish_deferred(kept.entry_id)
