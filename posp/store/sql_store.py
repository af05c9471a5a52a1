"""The ``Store`` behaviour written once over two primitives, ``_read`` and
``_write``, which the SQLite and PostgreSQL implementations provide.

Invariants:
* Each public method issues single statements; every compare-and-set is one
  ``UPDATE ... RETURNING`` (or ``INSERT ... ON CONFLICT``), so exactly one
  concurrent caller sees True whichever database runs it.
* The primitives translate driver errors: unique violations arrive here as
  ``DuplicateTransaction``, lost connections as ``StoreUnavailable``, anything
  else as ``StoreError``; the messages name operations, ids and traces only.
* ``_write`` returns only after the change is committed (durable).
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Final, TypeVar

from posp.errors import DuplicateTransaction, StoreError, StoreUnavailable
from posp.store import queries as q
from posp.store import rows
from posp.store.api import (
    BatchTotals,
    DeferredReversal,
    EntryThen,
    JournalEntry,
    Merchant,
    OpenEntries,
    SafItem,
    Settlement,
    Terminal,
    UploadedRecord,
)
from posp.store.batches import merge_batches
from posp.store.registry_cache import RegistryCache

#: How long ``due_saf`` hides the items it hands out from other pollers.
DEFAULT_SAF_LEASE_S = 30.0
#: Cached rows checked per statement (``_rows_by_keys``).
REVALIDATE_CHUNK: Final = 128

_Row = TypeVar("_Row", Terminal, Merchant)


class SqlStore(abc.ABC):
    """Base of SqliteStore and PostgresStore.

    ``due_saf`` leases what it returns: the items' next attempt moves to
    ``now + saf_lease_s`` so another instance polling meanwhile skips them; the
    sender then calls ``reschedule_saf`` or ``complete_saf``.  An item whose
    sender died becomes due again when the lease ends (0420 repeats are
    idempotent at the network).  ``saf_lease_s=0`` disables the lease.
    """

    #: The dialect's names for what migration 0037 changed on PostgreSQL only
    #: (``queries.PREAUTH_CODE`` and ``queries.STRANDED``).
    _preauth_code: ClassVar[str] = q.PREAUTH_CODE
    _stranded: ClassVar[str] = q.STRANDED
    #: One entry's INSERT, returning its id (PostgreSQL also lists it if pending).
    _insert_entry: ClassVar[str] = q.INSERT_ENTRY

    def __init__(self, *, node_id: str = "", saf_lease_s: float = DEFAULT_SAF_LEASE_S) -> None:
        self.node_id = node_id
        self.saf_lease_s = saf_lease_s
        self._terminals: RegistryCache[Terminal] = RegistryCache("terminals")
        self._merchants: RegistryCache[Merchant] = RegistryCache("merchants")

    # --- primitives ------------------------------------------------------------
    @abc.abstractmethod
    async def _read(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows (indexable by column name) of a query."""

    @abc.abstractmethod
    async def _write(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run a changing statement, commit, and return its RETURNING rows."""

    @abc.abstractmethod
    async def _cas_then(
        self,
        op: str,
        cas: tuple[str, Sequence[Any]],
        then: tuple[str, Sequence[Any]],
        *,
        then_required: bool = False,
    ) -> bool:
        """Run the compare-and-set statement ``cas``; only when it returned a row, run
        ``then`` in the same transaction.  Both commit together or neither does.
        True when ``cas`` returned a row.  With ``then_required``, ``then`` must
        return a row too, else nothing commits and StoreError is raised."""

    async def _insert_then(self, op: str, sql: str, params: Sequence[Any], then: EntryThen) -> int:
        """Run the insert ``sql`` (RETURNING id), then ``then`` with that id, in one
        transaction.  The database stores implement it; others cannot."""
        raise StoreError(f"{op}: this store cannot run work with an insert")

    @abc.abstractmethod
    def _time(self, value: dt.datetime) -> Any:
        """A UTC datetime as the driver wants it bound."""

    @property
    @abc.abstractmethod
    def _skip_locked(self) -> bool:
        """Whether row locks exist (PostgreSQL) so due_saf may skip locked rows."""

    async def _point_read(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """``_read`` for a small read by primary key on the hot path (the risk
        counters' snapshot); a store may answer it without a hand-off (SQLite)."""
        return await self._read(op, sql, params)

    async def _counter_write(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """``_write`` for a statement on the risk counters by key (PostgreSQL runs
        it on its pool of statements by key, ``PostgresStore._keyed_pool``)."""
        return await self._write(op, sql, params)

    async def _read_one(self, op: str, sql: str, params: Sequence[Any] = ()) -> Any | None:
        found = await self._read(op, sql, params)
        return found[0] if found else None

    async def _key_rows(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A small read by key that a request makes fresh each time (a sign-in
        reads its terminal, merchant, TMS view, IC versions and lifecycle state
        uncached).  ``_read`` here; SQLite answers it like ``_point_read``, on
        the event loop's own connection, without a thread hand-off."""
        return await self._read(op, sql, params)

    async def _key_read(self, op: str, sql: str, params: Sequence[Any] = ()) -> Any | None:
        """``_key_rows``' first row, or None."""
        found = await self._key_rows(op, sql, params)
        return found[0] if found else None

    # --- registry: merchants -----------------------------------------------------
    async def add_merchant(self, merchant: Merchant) -> None:
        values = [getattr(merchant, c) for c in rows.MERCHANT_COLUMNS]
        values[-1] = self._time(merchant.created_at or rows.now_utc())
        try:
            await self._write("add_merchant", q.ADD_MERCHANT, values)
        except DuplicateTransaction as exc:
            raise StoreError(f"merchant {merchant.merchant_id} already exists") from exc
        finally:
            self._merchants.forget(merchant.merchant_id)

    async def get_merchant(self, merchant_id: str, *, max_age_s: float = 0.0) -> Merchant | None:
        cached = self._merchants.get(merchant_id, max_age_s)
        if cached is None:
            cached = await self._merchants.revalidated(
                merchant_id,
                max_age_s,
                lambda stale: self._revalidate(self._merchants, "merchants", "merchant_id", stale),
            )
        if cached is not None:
            return cached
        generation, started_s = self._merchants.generation, time.monotonic()
        row = await self._key_read("get_merchant", q.GET_MERCHANT, [merchant_id])
        if row is None:
            return None
        merchant = rows.merchant_from_row(row)
        self._merchants.put(merchant_id, merchant, generation, started_s, int(row["row_version"]))
        return merchant

    async def list_merchants(self) -> list[Merchant]:
        return [rows.merchant_from_row(r) for r in await self._read("merchants", q.LIST_MERCHANTS)]

    async def set_merchant_status(self, merchant_id: str, status: str) -> bool:
        try:
            changed = await self._write(
                "merchant_status", q.SET_MERCHANT_STATUS, [status, merchant_id]
            )
        finally:
            self._merchants.forget(merchant_id)
        return bool(changed)

    # --- registry: terminals -----------------------------------------------------
    async def add_terminal(self, terminal: Terminal) -> None:
        values: list[Any] = []
        for column in rows.TERMINAL_COLUMNS:
            value = getattr(terminal, column)
            if column == "created_at":
                value = value or rows.now_utc()
            values.append(self._time(value) if isinstance(value, dt.datetime) else value)
        try:
            await self._write("add_terminal", q.ADD_TERMINAL, values)
            self._terminals.forget(terminal.terminal_id)
        except DuplicateTransaction as exc:
            raise StoreError(f"terminal {terminal.terminal_id} already exists") from exc
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if await self.get_merchant(terminal.merchant_id) is None:
                raise StoreError(f"merchant {terminal.merchant_id} is unknown") from exc
            raise

    async def get_terminal(self, terminal_id: str, *, max_age_s: float = 0.0) -> Terminal | None:
        cached = self._terminals.get(terminal_id, max_age_s)
        if cached is None:
            cached = await self._terminals.revalidated(
                terminal_id,
                max_age_s,
                lambda stale: self._revalidate(self._terminals, "terminals", "terminal_id", stale),
            )
        if cached is not None:
            return cached
        generation, started_s = self._terminals.generation, time.monotonic()
        row = await self._key_read("get_terminal", q.GET_TERMINAL, [terminal_id])
        if row is None:
            return None
        terminal = rows.terminal_from_row(row)
        self._terminals.put(terminal_id, terminal, generation, started_s, int(row["row_version"]))
        return terminal

    # --- registry: cached rows checked in bulk ------------------------------------
    async def _revalidate(
        self,
        cache: RegistryCache[_Row],
        table: str,
        column: str,
        stale: dict[str, tuple[_Row, object]],
    ) -> None:
        """Check the ``stale`` rows of ``cache`` (``table``, keyed by ``column``)
        against their ``row_version``, bumped by a trigger on every change
        (migration 0036): an unchanged row counts as read when the check
        started, a changed or vanished one is dropped."""
        started_s = time.monotonic()
        sql = q.row_versions(table, column, REVALIDATE_CHUNK)
        found = await self._rows_by_keys(f"{table}_versions", sql, sorted(stale), REVALIDATE_CHUNK)
        current = {row["registry_key"]: int(row["row_version"]) for row in found}
        cache.settle(stale, started_s, lambda key, _row, version: current.get(key) == version)

    async def _rows_by_keys(
        self, op: str, sql: str, keys: Sequence[str], per_statement: int
    ) -> list[Any]:
        """The rows of ``sql`` (a read by key with ``per_statement`` placeholders)
        for all ``keys``: one statement per ``per_statement`` keys, padded with
        NULLs, which match no row (so one statement text serves every call),
        yielding to the event loop between statements (SQLite reads inline)."""
        found: list[Any] = []
        for first in range(0, len(keys), per_statement):
            chunk: list[str | None] = list(keys[first : first + per_statement])
            chunk += [None] * (per_statement - len(chunk))
            found += await self._key_rows(op, sql, chunk)
            await asyncio.sleep(0)
        return found

    async def _write_terminal(self, op: str, sql: str, params: list[Any], terminal_id: str) -> bool:
        """A change to one terminal's row; its cached copy is forgotten (see registry_cache)."""
        try:
            return bool(await self._write(op, sql, params))
        finally:
            self._terminals.forget(terminal_id)

    async def list_terminals(self, merchant_id: str | None = None) -> list[Terminal]:
        if merchant_id is None:
            found = await self._read("terminals", q.LIST_TERMINALS)
        else:
            found = await self._read("terminals", q.LIST_MERCHANT_TERMINALS, [merchant_id])
        return [rows.terminal_from_row(r) for r in found]

    async def set_terminal_status(self, terminal_id: str, status: str) -> bool:
        params = [status, terminal_id]
        return await self._write_terminal(
            "terminal_status", q.SET_TERMINAL_STATUS, params, terminal_id
        )

    async def set_terminal_tmk(self, terminal_id: str, tmk_lmk: str, tmk_kcv: str) -> bool:
        params = [tmk_lmk, tmk_kcv, terminal_id]
        return await self._write_terminal("set_tmk", q.SET_TERMINAL_TMK, params, terminal_id)

    async def set_working_keys(
        self,
        terminal_id: str,
        tpk_lmk: str,
        tak_lmk: str,
        tdk_lmk: str | None,
        generated_at: dt.datetime,
    ) -> None:
        params = [tpk_lmk, tak_lmk, tdk_lmk, self._time(rows.as_utc(generated_at)), terminal_id]
        await self._write_terminal("set_working_keys", q.SET_WORKING_KEYS, params, terminal_id)

    async def clear_working_keys(self, terminal_id: str) -> None:
        params = [terminal_id]
        await self._write_terminal("clear_working_keys", q.CLEAR_WORKING_KEYS, params, terminal_id)

    async def count_signed_in(self, since: dt.datetime) -> int:
        row = await self._read_one("count_signed_in", q.COUNT_SIGNED_IN, [self._time(since)])
        return int(row["n"]) if row else 0

    async def close_batch(self, terminal_id: str, batch: str, next_batch: str) -> bool:
        params = [next_batch, terminal_id, batch]
        return await self._write_terminal("close_batch", q.CLOSE_BATCH, params, terminal_id)

    # --- journal -------------------------------------------------------------------
    async def insert_entry(
        self, entry: JournalEntry, *, dedupe: bool = True, then: EntryThen | None = None
    ) -> int:
        """Insert ``entry``; its id.  ``then`` (optional) runs in the same transaction
        right after the insert, given the new id (one writer job on SQLite, one
        transaction on PostgreSQL): both commit together or neither does."""
        values = rows.entry_insert_values(entry, dedupe=dedupe, default_node_id=self.node_id)
        values = [self._time(v) if isinstance(v, dt.datetime) else v for v in values]
        try:
            if then is not None:  # in one transaction with ``then`` (a batch of them on PG)
                return await self._insert_then("insert_entry", self._insert_entry, values, then)
            return await self._insert_entry_row(values)
        except DuplicateTransaction as exc:
            raise DuplicateTransaction(
                f"terminal {entry.terminal_id} batch {entry.batch} trace {entry.trace}"
                f" ({entry.direction}) is already journaled"
            ) from exc

    async def _insert_entry_row(self, values: list[Any]) -> int:
        """Insert one journal row (``rows.ENTRY_INSERT_COLUMNS`` order, times bound)
        and return its id; ``DuplicateTransaction`` when its dedupe key exists."""
        inserted = await self._write("insert_entry", self._insert_entry, values)
        return int(inserted[0]["id"])

    async def update_entry(self, entry_id: int, **changes: object) -> None:
        checked = rows.checked_entry_changes(changes)
        if not checked:
            return
        params = [self._time(v) if isinstance(v, dt.datetime) else v for v in checked.values()]
        await self._update_entry_row(entry_id, tuple(checked), params)

    async def _update_entry_row(
        self, entry_id: int, columns: tuple[str, ...], values: list[Any]
    ) -> None:
        """``update_entry`` once its changes are checked: set ``columns`` to ``values``."""
        await self._write("update_entry", q.update_entry(list(columns)), [*values, entry_id])

    async def get_entry(self, entry_id: int) -> JournalEntry | None:
        row = await self._read_one("get_entry", q.GET_ENTRY, [entry_id])
        return None if row is None else rows.entry_from_row(row)

    async def find_by_trace(
        self, terminal_id: str, batch: str, trace: str, direction: str = "original"
    ) -> JournalEntry | None:
        params = [terminal_id, batch, trace, direction]
        row = await self._read_one("find_by_trace", q.FIND_BY_TRACE, params)
        return None if row is None else rows.entry_from_row(row)

    async def find_by_rrn(
        self, rrn: str, *, local_date: str | None = None, merchant_id: str | None = None
    ) -> JournalEntry | None:
        tests = {"rrn": rrn, "local_date": local_date, "merchant_id": merchant_id}
        return await self._find_original("find_by_rrn", tests)

    async def find_preauth(
        self, merchant_id: str, auth_code: str, local_date: str | None, pan_hash: str | None
    ) -> JournalEntry | None:
        tests = {
            "merchant_id": merchant_id,
            self._preauth_code: auth_code,
            "state": "approved",
            "local_date": local_date,
            "pan_hash": pan_hash,
        }
        return await self._find_original("find_preauth", tests, q.PREAUTH_ONLY)

    async def _find_original(
        self, op: str, tests: dict[str, str | None], *fixed: str
    ) -> JournalEntry | None:
        """Latest original entry equal on every test whose value is not None and
        meeting the ``fixed`` conditions (SQL with no parameter)."""
        used = {column: value for column, value in tests.items() if value is not None}
        sql = q.find_original([*fixed, *(f"{column} = ?" for column in used)])
        row = await self._read_one(op, sql, list(used.values()))
        return None if row is None else rows.entry_from_row(row)

    async def transition(self, entry_id: int, from_states: tuple[str, ...], to_state: str) -> bool:
        if not from_states:
            return False
        rows.refuse_pending(to_state)
        params = [to_state, entry_id, *from_states]
        return bool(await self._write("transition", q.transition(len(from_states)), params))

    async def finish_entry(
        self, entry_id: int, from_states: tuple[str, ...], **changes: object
    ) -> bool:
        checked = rows.checked_entry_changes(changes)
        if not from_states or "state" not in checked:
            raise StoreError("finish_entry: needs from_states and a new state")
        params = [self._time(v) if isinstance(v, dt.datetime) else v for v in checked.values()]
        return await self._finish_entry_row(entry_id, from_states, tuple(checked), params)

    async def _finish_entry_row(
        self,
        entry_id: int,
        from_states: tuple[str, ...],
        columns: tuple[str, ...],
        values: list[Any],
    ) -> bool:
        """``finish_entry`` once its changes are checked: set ``columns`` to ``values``
        (bound) where the entry's state is one of ``from_states``; True if it was."""
        sql = q.finish_entry(list(columns), len(from_states))
        return bool(await self._write("finish_entry", sql, [*values, entry_id, *from_states]))

    @staticmethod
    def _refunded_params(entry_id: int, amount_minor: int, limit_minor: int) -> list[int]:
        return [amount_minor, entry_id, amount_minor, limit_minor, amount_minor, amount_minor]

    async def add_refunded(self, entry_id: int, amount_minor: int, limit_minor: int) -> bool:
        params = self._refunded_params(entry_id, amount_minor, limit_minor)
        return bool(await self._write("add_refunded", q.ADD_REFUNDED, params))

    async def reserve_refunded(
        self, original_id: int, amount_minor: int, limit_minor: int, entry_id: int
    ) -> bool:
        if amount_minor <= 0:
            raise StoreError("reserve_refunded: the amount must be positive")
        reserve = (q.ADD_REFUNDED, self._refunded_params(original_id, amount_minor, limit_minor))
        record = (q.SET_RESERVED, [amount_minor, original_id, entry_id])
        return await self._cas_then("reserve_refunded", reserve, record, then_required=True)

    async def release_reservation(self, entry_id: int, amount_minor: int) -> bool:
        take = (q.TAKE_RESERVATION, [entry_id, amount_minor])
        # Never below zero, and never a share taken without being given back: a
        # mismatch (which no path should make) rolls both back and raises.
        give_back = (q.GIVE_BACK_REFUNDED, [amount_minor, entry_id, amount_minor])
        return await self._cas_then("release_reservation", take, give_back, then_required=True)

    async def reverse_and_queue(
        self, entry_id: int, from_states: tuple[str, ...], to_state: str, item: SafItem
    ) -> bool:
        if not from_states:
            return False
        rows.refuse_pending(to_state)
        cas = (q.transition(len(from_states)), [to_state, entry_id, *from_states])
        queue = (q.ENQUEUE_SAF, self._saf_params(SafItem(entry_id, item.payload)))
        return await self._cas_then("reverse_and_queue", cas, queue)

    async def in_doubt_entries(
        self, created_before: dt.datetime, limit: int = 100
    ) -> list[JournalEntry]:
        params = [self._time(rows.as_utc(created_before)), limit]
        found = await self._read("in_doubt_entries", q.IN_DOUBT, params)
        return [rows.entry_from_row(r) for r in found]

    async def open_entries(self) -> OpenEntries:
        row = await self._read_one("open_entries", q.OPEN_ENTRIES)
        pending = int(row["n"]) if row else 0
        return OpenEntries(pending, pending)

    async def stranded_reservations(
        self,
        created_before: dt.datetime,
        limit: int = 100,
        after: JournalEntry | None = None,
    ) -> list[JournalEntry]:
        params: list[Any] = [self._time(rows.as_utc(created_before))]
        if after is None or after.created_at is None or after.id is None:
            sql = q.STRANDED_RESERVATIONS.format(stranded=self._stranded, after="")
        else:
            sql = q.STRANDED_RESERVATIONS.format(stranded=self._stranded, after=q.STRANDED_AFTER)
            params += [self._time(rows.as_utc(after.created_at)), after.id]
        found = await self._read("stranded_reservations", sql, [*params, limit])
        return [rows.entry_from_row(r) for r in found]

    # --- store-and-forward ---------------------------------------------------------
    def _saf_params(self, item: SafItem) -> list[Any]:
        next_at = rows.as_utc(item.next_attempt_at) if item.next_attempt_at else rows.now_utc()
        created = rows.as_utc(item.created_at) if item.created_at else rows.now_utc()
        params = [item.entry_id, item.payload, item.attempts, self._time(next_at)]
        return [*params, self._time(created)]

    async def enqueue_saf(self, item: SafItem) -> int:
        try:
            queued = await self._write("enqueue_saf", q.ENQUEUE_SAF, self._saf_params(item))
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if await self.get_entry(item.entry_id) is None:
                raise StoreError(f"enqueue_saf: journal entry {item.entry_id} is unknown") from exc
            raise
        return int(queued[0]["id"])

    async def due_saf(self, now: dt.datetime, limit: int = 100) -> list[SafItem]:
        now_db = self._time(rows.as_utc(now))
        if self.saf_lease_s <= 0:
            found = await self._read("due_saf", q.SELECT_DUE_SAF, [now_db, limit])
            return [rows.saf_from_row(r) for r in found]
        lease_until = rows.as_utc(now) + dt.timedelta(seconds=self.saf_lease_s)
        sql = q.lease_due_saf(skip_locked=self._skip_locked)
        found = await self._write("due_saf", sql, [self._time(lease_until), now_db, limit])
        items = [rows.saf_from_row(r) for r in found]
        items.sort(key=lambda item: item.id or 0)
        return items

    async def reschedule_saf(self, item_id: int, next_attempt_at: dt.datetime) -> None:
        params = [self._time(rows.as_utc(next_attempt_at)), item_id]
        await self._write("reschedule_saf", q.RESCHEDULE_SAF, params)

    async def complete_saf(self, item_id: int) -> None:
        params = [self._time(rows.now_utc()), item_id]
        await self._write("complete_saf", q.COMPLETE_SAF, params)

    async def saf_depth(self) -> int:
        row = await self._read_one("saf_depth", q.SAF_DEPTH)
        return int(row["n"]) if row else 0

    async def get_saf(self, entry_id: int) -> SafItem | None:
        row = await self._read_one("get_saf", q.GET_SAF, [entry_id])
        return None if row is None else rows.saf_from_row(row)

    # --- reversals waiting for the HSM -------------------------------------------------
    async def defer_reversal(self, item: DeferredReversal) -> None:
        now = rows.now_utc()
        next_at = rows.as_utc(item.next_attempt_at) if item.next_attempt_at else now
        params = [item.entry_id, item.body, item.tak_lmk, item.attempts, self._time(next_at)]
        await self._write("defer_reversal", q.DEFER_REVERSAL, [*params, self._time(now)])

    async def due_deferred(self, now: dt.datetime, limit: int = 50) -> list[DeferredReversal]:
        params = [self._time(rows.as_utc(now)), limit]
        found = await self._read("due_deferred", q.SELECT_DUE_DEFERRED, params)
        return [rows.deferred_from_row(r) for r in found]

    async def reschedule_deferred(self, entry_id: int, next_attempt_at: dt.datetime) -> None:
        params = [self._time(rows.as_utc(next_attempt_at)), entry_id]
        await self._write("reschedule_deferred", q.RESCHEDULE_DEFERRED, params)

    async def finish_deferred(self, entry_id: int) -> None:
        await self._write("finish_deferred", q.FINISH_DEFERRED, [entry_id])

    # --- settlement and batch upload ------------------------------------------------
    async def batch_totals(self, terminal_id: str, batch: str) -> tuple[BatchTotals, BatchTotals]:
        by_class = {"00": BatchTotals(), "01": BatchTotals()}
        for row in await self._read("batch_totals", q.BATCH_TOTALS, [terminal_id, batch]):
            by_class[row["class"]] = BatchTotals(
                debit_amount_minor=int(row["debit_amount_minor"] or 0),
                debit_count=int(row["debit_count"] or 0),
                credit_amount_minor=int(row["credit_amount_minor"] or 0),
                credit_count=int(row["credit_count"] or 0),
            )
        return by_class["00"], by_class["01"]

    async def record_settlement(self, settlement: Settlement) -> int:
        values = rows.settlement_values(settlement)
        values = [self._time(v) if isinstance(v, dt.datetime) else v for v in values]
        recorded = await self._write("record_settlement", q.RECORD_SETTLEMENT, values)
        return int(recorded[0]["id"])

    async def get_settlement(self, terminal_id: str, batch: str) -> Settlement | None:
        row = await self._read_one("get_settlement", q.GET_SETTLEMENT, [terminal_id, batch])
        return None if row is None else rows.settlement_from_row(row)

    async def list_settlements(
        self,
        *,
        date: dt.date | None = None,
        terminal_id: str | None = None,
        utc_offset_hours: float = 0.0,
    ) -> list[Settlement]:
        conditions: list[str] = []
        params: list[Any] = []
        if date is not None:
            # the business day runs from local midnight to local midnight
            local = dt.timezone(dt.timedelta(hours=utc_offset_hours))
            day_start = dt.datetime.combine(date, dt.time(), local).astimezone(rows.UTC)
            conditions += ["settled_at >= ?", "settled_at < ?"]
            params += [self._time(day_start), self._time(day_start + dt.timedelta(days=1))]
        if terminal_id is not None:
            conditions.append("terminal_id = ?")
            params.append(terminal_id)
        found = await self._read("list_settlements", q.list_settlements(conditions), params)
        return [rows.settlement_from_row(r) for r in found]

    async def record_upload(self, record: UploadedRecord) -> bool:
        values = [*rows.upload_values(record), self._time(rows.now_utc())]
        return bool(await self._write("record_upload", q.RECORD_UPLOAD, values))

    async def find_debit_or_credit(
        self, terminal_id: str, batch: str, trace: str
    ) -> JournalEntry | None:
        params = [terminal_id, batch, trace]
        row = await self._read_one("find_debit_or_credit", q.FIND_DEBIT_OR_CREDIT, params)
        return None if row is None else rows.entry_from_row(row)

    async def list_uploads(self, terminal_id: str, batch: str) -> list[UploadedRecord]:
        found = await self._read("list_uploads", q.LIST_UPLOADS, [terminal_id, batch])
        return [rows.upload_from_row(r) for r in found]

    async def list_entries(self, terminal_id: str, batch: str) -> list[JournalEntry]:
        found = await self._read("list_entries", q.LIST_ENTRIES, [terminal_id, batch])
        return [rows.entry_from_row(r) for r in found]

    async def list_batches(self, terminal_id: str | None = None) -> list[dict[str, object]]:
        by_terminal = terminal_id is not None
        params = [terminal_id] if by_terminal else []
        summaries, open_batches, settled, uploads = await asyncio.gather(
            self._read("list_batches", q.batch_summaries(by_terminal), params),
            self._read("list_batches", q.open_batches(by_terminal), params),
            self._read("list_batches", q.settlement_flags(by_terminal), params),
            self._read("list_batches", q.upload_counts(by_terminal), params),
        )
        return merge_batches(summaries, open_batches, settled, uploads)

    # --- sequences -----------------------------------------------------------------
    async def next_sequence(self, name: str) -> int:
        return int((await self._write("next_sequence", q.NEXT_SEQUENCE, [name]))[0]["value"])
