"""The risk step's records in the store (migration 0011): one row per evaluated
request (its decisions, ruleset version and, when counted, its hold), the
terminals' lifecycle state and the lifecycle events.  Written over a SqlStore's
``_read``/``_write`` primitives like ``posp.store.risk_counters``.

Invariants:
* A record is keyed by its journal entry id and written once
  (``ON CONFLICT DO NOTHING``): a repeat never replaces the first decision.
* A hold is released at most once: ``take_hold`` is a compare-and-set on
  ``released_at`` that returns the hold only to the caller that set it, so a
  void, a reversal and the sweeper racing on one entry give it back once.
* No card data: the hold's counter keys carry the journal's keyed PAN hash.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from posp.risk.counters import AddResult, CounterAdd, adds_from_json, adds_to_json
from posp.risk.lifecycle import Event, TerminalRiskState
from posp.store.queries import numbered
from posp.store.risk_counters import (
    PG_CHECK_AND_ADD,
    SqliteAdd,
    SqlRiskCounters,
    pg_columns,
    sqlite_add,
    sqlite_check_and_add,
    value_of,
)
from posp.store.sql_store import SqlStore

INSERT_RECORD = (
    "INSERT INTO risk_records (entry_id, rrn, terminal_id, local_day, ruleset_version,"
    " outcome, flagged, decisions, hold, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (entry_id) DO NOTHING"
)
DELETE_RECORD = "DELETE FROM risk_records WHERE entry_id = ?"
TAKE_HOLD = (
    "UPDATE risk_records SET released_at = ?"
    " WHERE entry_id = ? AND hold IS NOT NULL AND released_at IS NULL RETURNING hold"
)
RESTORE_HOLD = (
    "UPDATE risk_records SET released_at = NULL"
    " WHERE entry_id = ? AND hold IS NOT NULL AND released_at IS NOT NULL RETURNING hold"
)
_RECORD_COLUMNS = (
    "r.entry_id, r.rrn, r.terminal_id, r.local_day, r.ruleset_version, r.outcome,"
    " r.flagged, r.decisions, r.hold, r.released_at, j.txn_type, j.amount_minor,"
    " j.pan_masked, j.state, j.response_code"
)
#: A record's RRN is its journal entry's (both are the request's ``ctx.rrn``), so
#: the records of an RRN are found through the journal's RRN index: the records
#: table keeps no index of its own on it (migration 0034), one page less in the
#: commit of every risk-checked request.
BY_RRN = (
    f"SELECT {_RECORD_COLUMNS} FROM journal j JOIN risk_records r ON r.entry_id = j.id"
    " WHERE j.rrn = ? ORDER BY r.entry_id"
)
#: The flagged records of a local day, by the partial index of flagged records
#: (migration 0034: a record that flags nothing adds no entry to it).
FLAGGED = (
    f"SELECT {_RECORD_COLUMNS} FROM risk_records r LEFT JOIN journal j ON j.id = r.entry_id"
    " WHERE r.local_day = ? AND r.flagged = 1 ORDER BY r.entry_id"
)
_STATE_COLUMNS = (
    "terminal_id, registered_on, bound_serial, bound_iccid, last_active_on, dormant, frozen_reason"
)
GET_STATE = f"SELECT {_STATE_COLUMNS} FROM risk_terminals WHERE terminal_id = ?"
PUT_STATE = (
    f"INSERT INTO risk_terminals ({_STATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (terminal_id) DO UPDATE SET registered_on = excluded.registered_on,"
    " bound_serial = excluded.bound_serial, bound_iccid = excluded.bound_iccid,"
    " last_active_on = excluded.last_active_on, dormant = excluded.dormant,"
    " frozen_reason = excluded.frozen_reason"
)
ICCID_ELSEWHERE = (
    "SELECT terminal_id FROM risk_terminals WHERE bound_iccid = ? AND terminal_id <> ? LIMIT 1"
)
INSERT_EVENT = (
    "INSERT INTO risk_events (terminal_id, event, detail, created_at) VALUES (?, ?, ?, ?)"
)
EVENTS = (
    "SELECT terminal_id, event, detail, created_at FROM risk_events"
    " WHERE terminal_id = ? ORDER BY id"
)


@dataclass(frozen=True, slots=True)
class RiskRecord:
    """One evaluated request as ``posp risk explain`` / ``flagged`` show it."""

    entry_id: int
    rrn: str | None
    terminal_id: str
    local_day: str
    ruleset_version: str
    outcome: str  # pass, flag, decline, race
    decisions: list[dict[str, Any]]
    held: bool
    released: bool
    txn_type: str | None
    amount_minor: int | None
    pan_masked: str | None
    state: str | None
    response_code: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "rrn": self.rrn,
            "terminal_id": self.terminal_id,
            "local_day": self.local_day,
            "ruleset_version": self.ruleset_version,
            "outcome": self.outcome,
            "decisions": self.decisions,
            "held": self.held,
            "released": self.released,
            "txn_type": self.txn_type,
            "amount_minor": self.amount_minor,
            "pan_masked": self.pan_masked,
            "state": self.state,
            "response_code": self.response_code,
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class SqlRiskRecords:
    """Risk records, hold releases and terminal lifecycle state on a SqlStore."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def keep(self, entry_id: int, **record: Any) -> None:
        """The record of ``entry_id`` (the fields of :meth:`_record_params`)."""
        params = self._record_params(entry_id, **record)
        await self._store._write("risk_keep", INSERT_RECORD, params)

    @staticmethod
    def _record_params(
        entry_id: int,
        *,
        rrn: str | None,
        terminal_id: str,
        local_day: dt.date,
        ruleset_version: str,
        outcome: str,
        flagged: bool,
        decisions: Sequence[dict[str, object]],
        hold: Sequence[CounterAdd] | None,
    ) -> list[Any]:
        return [
            entry_id,
            rrn,
            terminal_id,
            local_day.isoformat(),
            ruleset_version,
            outcome,
            1 if flagged else 0,
            json.dumps(list(decisions), separators=(",", ":"), ensure_ascii=False),
            adds_to_json(hold) if hold else None,
            _now(),
        ]

    async def hold_and_keep(
        self,
        counters: SqlRiskCounters,
        entry_id: int,
        *,
        hold: Sequence[CounterAdd],
        **record: Any,
    ) -> AddResult:
        """Check-and-add ``hold`` and keep it with ``entry_id`` (:meth:`keep`'s
        fields) in the same transaction where the database allows it."""
        params = self._record_params(entry_id, hold=hold, **record)
        return await counters.check_and_add(hold, then=(INSERT_RECORD, params))

    async def take_hold(self, entry_id: int) -> tuple[CounterAdd, ...]:
        """The entry's hold, marked released; () when none or already released."""
        found = await self._store._write("risk_take_hold", TAKE_HOLD, [_now(), entry_id])
        return adds_from_json(str(found[0]["hold"])) if found else ()

    async def restore_hold(self, entry_id: int) -> tuple[CounterAdd, ...]:
        """The entry's released hold, marked held again (its void was reversed);
        () when it has none or it is held."""
        found = await self._store._write("risk_restore_hold", RESTORE_HOLD, [entry_id])
        return adds_from_json(str(found[0]["hold"])) if found else ()

    async def by_rrn(self, rrn: str) -> list[RiskRecord]:
        return [_record(r) for r in await self._store._read("risk_by_rrn", BY_RRN, [rrn])]

    async def flagged(self, day: dt.date) -> list[RiskRecord]:
        found = await self._store._read("risk_flagged", FLAGGED, [day.isoformat()])
        return [_record(r) for r in found]

    # --- terminal lifecycle ---------------------------------------------------------
    async def terminal_state(self, terminal_id: str) -> TerminalRiskState | None:
        row = await self._store._key_read("risk_terminal_state", GET_STATE, [terminal_id])
        if row is None:
            return None
        last = row["last_active_on"]
        return TerminalRiskState(
            registered_on=dt.date.fromisoformat(str(row["registered_on"])),
            bound_serial=str(row["bound_serial"]),
            bound_iccid=str(row["bound_iccid"]),
            last_active_on=dt.date.fromisoformat(str(last)) if last else None,
            dormant=bool(row["dormant"]),
            frozen_reason=str(row["frozen_reason"]),
        )

    async def put_terminal_state(self, terminal_id: str, state: TerminalRiskState) -> None:
        params = [
            terminal_id,
            state.registered_on.isoformat(),
            state.bound_serial,
            state.bound_iccid,
            state.last_active_on.isoformat() if state.last_active_on else None,
            1 if state.dormant else 0,
            state.frozen_reason,
        ]
        await self._store._write("risk_put_terminal_state", PUT_STATE, params)

    async def iccid_bound_elsewhere(self, iccid: str, terminal_id: str) -> bool:
        if not iccid:
            return False
        found = await self._store._read("risk_iccid", ICCID_ELSEWHERE, [iccid, terminal_id])
        return bool(found)

    async def journal_event(self, terminal_id: str, event: Event, detail: str = "") -> None:
        params = [terminal_id, event.value, detail, _now()]
        await self._store._write("risk_event", INSERT_EVENT, params)

    async def events(self, terminal_id: str) -> list[tuple[str, str]]:
        found = await self._store._read("risk_events", EVENTS, [terminal_id])
        return [(str(r["event"]), str(r["detail"])) for r in found]


@dataclass(slots=True)
class HoldWithEntry:
    """A hold's check-and-add and, when applied, its record, run in the pending
    journal entry's transaction (``SqlStore.insert_entry(then=...)``, an
    ``EntryThen``): one writer job on SQLite, one transaction on PostgreSQL, so
    the entry, the counters and the record of the hold commit together.

    On SQLite a missing counter row is created by the add itself.  The
    PostgreSQL store runs concurrent ones in one transaction (``batchable``;
    ``posp.store.pg_holds``: every key of the batch created, then locked, in key
    order, the holds decided in arrival order).  Run alone (``postgres``: a
    failed batch's items), its rows are created first in a statement of their
    own (autocommit), not in the transaction: creating rows and then locking
    others in one transaction could deadlock with a lone hold of another
    instance doing the same in the other order.

    After the run, ``result`` is the add's result, or None when a PostgreSQL row
    was found missing all the same on that lone path (purged meanwhile): the
    caller then holds the old way (``SqlRiskRecords.hold_and_keep``: creates,
    retries)."""

    hold: tuple[CounterAdd, ...]
    record: dict[str, Any]  # SqlRiskRecords._record_params' fields but entry_id and hold
    result: AddResult | None = field(default=None)
    #: Built here, on the event loop, not in the writer job (which holds the lock).
    _record_params: list[Any] = field(default_factory=list)
    _sqlite_add: SqliteAdd | None = None

    def __post_init__(self) -> None:
        self._record_params = SqlRiskRecords._record_params(0, hold=self.hold, **self.record)

    #: The PostgreSQL store may run it in a group commit (``posp.store.pg_holds``).
    batchable = True

    def _params(self, entry_id: int) -> list[Any]:
        return [entry_id, *self._record_params[1:]]

    def record_row(self, entry_id: int) -> list[Any]:
        """The record's values for ``entry_id`` (``pg_holds.BatchHold``)."""
        return self._params(entry_id)

    def prepare_sqlite(self) -> None:
        """Build the SQLite parameters now (call before ``insert_entry``)."""
        self._sqlite_add = sqlite_add(self.hold)

    def sqlite(self, connection: Any, entry_id: int) -> None:
        self.result = sqlite_check_and_add(connection, self.hold, self._sqlite_add)
        if self.result.applied:
            connection.execute(INSERT_RECORD, self._params(entry_id)).fetchall()

    async def postgres(self, connection: Any, entry_id: int) -> None:
        # The record first and the add LAST before the commit: the add locks the
        # counter rows (a merchant's day row is every purchase's), and a lock is
        # held until the commit, so nothing else may wait between them.  A refused
        # add takes the record back.
        await connection.fetch(numbered(INSERT_RECORD), *self._params(entry_id))
        found = await connection.fetch(numbered(PG_CHECK_AND_ADD), *pg_columns(self.hold))
        before = {r["counter_key"]: value_of(r) for r in found if r["counter_key"] is not None}
        if found and found[0]["pass"]:
            self.result = AddResult(True, before)
            return
        await connection.fetch(numbered(DELETE_RECORD), entry_id)
        self.result = AddResult(False, before) if len(before) == len(self.hold) else None


def _record(row: Any) -> RiskRecord:
    amount = row["amount_minor"]
    return RiskRecord(
        entry_id=int(row["entry_id"]),
        rrn=row["rrn"],
        terminal_id=str(row["terminal_id"]),
        local_day=str(row["local_day"]),
        ruleset_version=str(row["ruleset_version"]),
        outcome=str(row["outcome"]),
        decisions=list(json.loads(str(row["decisions"]))),
        held=row["hold"] is not None,
        released=row["released_at"] is not None,
        txn_type=row["txn_type"],
        amount_minor=int(amount) if amount is not None else None,
        pan_masked=row["pan_masked"],
        state=row["state"],
        response_code=row["response_code"],
    )
