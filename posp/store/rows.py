"""Mapping between the store's dataclasses and database rows, shared by both
implementations.

Invariants:
* Every datetime leaving the store is timezone-aware UTC; a naive datetime
  handed in is taken to be UTC (the switch only ever deals in UTC).
* Column names equal dataclass attribute names, so ``update_entry`` can only
  touch columns that ``JournalEntry`` declares (``UPDATABLE_ENTRY_FIELDS``);
  anything else is refused before any SQL is built.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from posp.errors import StoreError
from posp.store.api import (
    PENDING,
    BatchTotals,
    DeferredReversal,
    JournalEntry,
    Merchant,
    SafItem,
    Settlement,
    Terminal,
    UploadedRecord,
)

UTC = dt.UTC

MERCHANT_COLUMNS = tuple(f.name for f in dataclasses.fields(Merchant))
TERMINAL_COLUMNS = tuple(f.name for f in dataclasses.fields(Terminal))
ENTRY_COLUMNS = tuple(f.name for f in dataclasses.fields(JournalEntry))
#: Columns written by insert_entry (the database assigns id).
ENTRY_INSERT_COLUMNS = (*(c for c in ENTRY_COLUMNS if c != "id"), "dedupe")
UPDATABLE_ENTRY_FIELDS = frozenset(c for c in ENTRY_COLUMNS if c not in ("id", "created_at"))
UPLOAD_COLUMNS = tuple(f.name for f in dataclasses.fields(UploadedRecord))

#: Settlement totals flattened to columns: (attribute, column prefix).
SETTLEMENT_TOTALS = (
    ("domestic", "dom_"),
    ("foreign", "for_"),
    ("terminal_domestic", "term_dom_"),
    ("terminal_foreign", "term_for_"),
)
_TOTALS_FIELDS = tuple(f.name for f in dataclasses.fields(BatchTotals))
SETTLEMENT_SCALARS = (
    "terminal_id",
    "merchant_id",
    "batch",
    "domestic_balanced",
    "foreign_balanced",
    "upload_records",
    "upload_mismatches",
    "upload_complete",
    "settled_at",
)
SETTLEMENT_COLUMNS = (
    *SETTLEMENT_SCALARS[:3],
    *(prefix + name for _, prefix in SETTLEMENT_TOTALS for name in _TOTALS_FIELDS),
    *SETTLEMENT_SCALARS[3:],
)

_BOOL_FIELDS = frozenset({"domestic_balanced", "foreign_balanced", "upload_complete", "matched"})


def now_utc() -> dt.datetime:
    return dt.datetime.now(UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """The same instant as an aware UTC datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def read_time(value: object) -> dt.datetime | None:
    """A database time (SQLite text or PostgreSQL timestamptz) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if isinstance(value, str):
        return as_utc(dt.datetime.fromisoformat(value))
    raise StoreError(f"unexpected time value of type {type(value).__name__}")


def merchant_from_row(row: Mapping[str, Any]) -> Merchant:
    values = {c: row[c] for c in MERCHANT_COLUMNS}
    values["created_at"] = read_time(values["created_at"])
    return Merchant(**values)


def terminal_from_row(row: Mapping[str, Any]) -> Terminal:
    values = {c: row[c] for c in TERMINAL_COLUMNS}
    values["created_at"] = read_time(values["created_at"])
    values["keys_generated_at"] = read_time(values["keys_generated_at"])
    return Terminal(**values)


def entry_from_row(row: Mapping[str, Any]) -> JournalEntry:
    values = {c: row[c] for c in ENTRY_COLUMNS}
    values["created_at"] = read_time(values["created_at"])
    return JournalEntry(**values)


def entry_insert_values(entry: JournalEntry, *, dedupe: bool, default_node_id: str) -> list[Any]:
    """Values for ``ENTRY_INSERT_COLUMNS``; fills created_at and node_id when unset."""
    values: list[Any] = []
    for column in ENTRY_INSERT_COLUMNS:
        if column == "dedupe":
            values.append(dedupe)
        elif column == "created_at":
            values.append(as_utc(entry.created_at) if entry.created_at else now_utc())
        elif column == "node_id":
            values.append(entry.node_id or default_node_id)
        else:
            values.append(getattr(entry, column))
    return values


#: No write changes an entry's state to pending (an entry may be inserted
#: pending, never moved there): the PostgreSQL store lists pending entries as
#: they are inserted (migration 0037's journal_open).
NEVER_PENDING_AGAIN: Final = "update_entry: an entry never goes back to state pending"


def refuse_pending(new_state: object) -> None:
    """StoreError when a write would change an entry's state to pending."""
    if new_state == PENDING:
        raise StoreError(NEVER_PENDING_AGAIN)


def checked_entry_changes(changes: Mapping[str, object]) -> dict[str, object]:
    """``changes`` with unknown or read-only attribute names refused (StoreError names them)."""
    unknown = sorted(set(changes) - UPDATABLE_ENTRY_FIELDS)
    if unknown:
        raise StoreError(f"update_entry: not updatable journal fields: {', '.join(unknown)}")
    refuse_pending(changes.get("state"))
    return {
        name: as_utc(value) if isinstance(value, dt.datetime) else value
        for name, value in changes.items()
    }


def saf_from_row(row: Mapping[str, Any]) -> SafItem:
    return SafItem(
        entry_id=row["entry_id"],
        payload=bytes(row["payload"]),
        attempts=row["attempts"],
        next_attempt_at=read_time(row["next_attempt_at"]),
        id=row["id"],
        created_at=read_time(row["created_at"]),
        delivered_at=read_time(row["delivered_at"]),
    )


def deferred_from_row(row: Mapping[str, Any]) -> DeferredReversal:
    return DeferredReversal(
        entry_id=row["entry_id"],
        body=bytes(row["body"]),
        tak_lmk=row["tak_lmk"],
        attempts=row["attempts"],
        next_attempt_at=read_time(row["next_attempt_at"]),
        created_at=read_time(row["created_at"]),
    )


def settlement_values(settlement: Settlement) -> list[Any]:
    """Values for ``SETTLEMENT_COLUMNS``; settled_at defaults to now."""
    values: list[Any] = [settlement.terminal_id, settlement.merchant_id, settlement.batch]
    for attribute, _ in SETTLEMENT_TOTALS:
        totals: BatchTotals = getattr(settlement, attribute)
        values.extend(getattr(totals, name) for name in _TOTALS_FIELDS)
    for name in SETTLEMENT_SCALARS[3:]:
        value = getattr(settlement, name)
        if name == "settled_at":
            value = as_utc(value) if value else now_utc()
        values.append(value)
    return values


def settlement_from_row(row: Mapping[str, Any]) -> Settlement:
    totals: dict[str, Any] = {
        attribute: BatchTotals(**{name: row[prefix + name] for name in _TOTALS_FIELDS})
        for attribute, prefix in SETTLEMENT_TOTALS
    }
    scalars: dict[str, Any] = {name: row[name] for name in SETTLEMENT_SCALARS}
    for name in _BOOL_FIELDS & scalars.keys():
        scalars[name] = bool(scalars[name])
    scalars["settled_at"] = read_time(scalars["settled_at"])
    return Settlement(id=row["id"], **totals, **scalars)


def upload_values(record: UploadedRecord) -> list[Any]:
    return [getattr(record, c) for c in UPLOAD_COLUMNS]


def upload_from_row(row: Mapping[str, Any]) -> UploadedRecord:
    values = {c: row[c] for c in UPLOAD_COLUMNS}
    values["matched"] = bool(values["matched"])
    return UploadedRecord(**values)
