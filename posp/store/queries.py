"""The store's SQL, written once for both dialects with ``?`` placeholders.

PostgreSQL gets the same text with ``$1, $2, ...`` (``numbered``).  Every
compare-and-set is one statement with ``RETURNING`` so that "did this caller
win" is "did a row come back", identically on SQLite (>= 3.35) and PostgreSQL.
No statement contains a literal ``?``.

Settlement rule (terminal-link.md §3.3): debits are approved purchases and
completions neither voided nor reversed (a voided/reversed entry has left the
approved state, so the state test is enough); credits are approved refunds.
Card class ``01`` is foreign, anything else domestic.
"""

from __future__ import annotations

import functools
import re

from posp.store.rows import (
    ENTRY_INSERT_COLUMNS,
    MERCHANT_COLUMNS,
    SETTLEMENT_COLUMNS,
    TERMINAL_COLUMNS,
    UPLOAD_COLUMNS,
)
from posp.txn import CREDIT_TYPES, DEBIT_TYPES, TxnType


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``sql`` with each ``?`` replaced by ``$1``, ``$2``, ... (PostgreSQL style)."""
    counter = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def marks(count: int) -> str:
    return ", ".join("?" * count)


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks(len(columns))})"


# --- registry ----------------------------------------------------------------
ADD_MERCHANT = _insert("merchants", MERCHANT_COLUMNS)
GET_MERCHANT = "SELECT * FROM merchants WHERE merchant_id = ?"
LIST_MERCHANTS = "SELECT * FROM merchants ORDER BY merchant_id"
SET_MERCHANT_STATUS = "UPDATE merchants SET status = ? WHERE merchant_id = ? RETURNING merchant_id"

ADD_TERMINAL = _insert("terminals", TERMINAL_COLUMNS)
GET_TERMINAL = "SELECT * FROM terminals WHERE terminal_id = ?"
LIST_TERMINALS = "SELECT * FROM terminals ORDER BY terminal_id"
LIST_MERCHANT_TERMINALS = "SELECT * FROM terminals WHERE merchant_id = ? ORDER BY terminal_id"
SET_TERMINAL_STATUS = "UPDATE terminals SET status = ? WHERE terminal_id = ? RETURNING terminal_id"
_NO_WORKING_KEYS = "tpk_lmk = NULL, tak_lmk = NULL, tdk_lmk = NULL, keys_generated_at = NULL"
SET_TERMINAL_TMK = (
    f"UPDATE terminals SET tmk_lmk = ?, tmk_kcv = ?, {_NO_WORKING_KEYS}"
    " WHERE terminal_id = ? RETURNING terminal_id"
)
SET_WORKING_KEYS = (
    "UPDATE terminals SET tpk_lmk = ?, tak_lmk = ?, tdk_lmk = ?, keys_generated_at = ?"
    " WHERE terminal_id = ?"
)
CLEAR_WORKING_KEYS = f"UPDATE terminals SET {_NO_WORKING_KEYS} WHERE terminal_id = ?"
COUNT_SIGNED_IN = (
    "SELECT count(*) AS n FROM terminals WHERE tpk_lmk IS NOT NULL AND keys_generated_at >= ?"
)
CLOSE_BATCH = (
    "UPDATE terminals SET batch = ? WHERE terminal_id = ? AND batch = ? RETURNING terminal_id"
)


def _quoted(names: tuple[str, ...]) -> str:
    """SQL literals of transaction-type names (identifiers from ``posp.txn``, never
    from a caller)."""
    assert all(name.replace("_", "").isalnum() for name in names)
    return ", ".join(f"'{name}'" for name in names)


def row_versions(table: str, column: str, count: int) -> str:
    """The ``row_version`` of ``count`` registry rows by key (``SqlStore._revalidate``)."""
    return (
        f"SELECT {column} AS registry_key, row_version FROM {table}"
        f" WHERE {column} IN ({marks(count)})"
    )


# --- journal -----------------------------------------------------------------
INSERT_ENTRY = _insert("journal", ENTRY_INSERT_COLUMNS) + " RETURNING id"
#: PostgreSQL since migration 0037: every statement that inserts journal entries
#: lists the pending ones in journal_open, in a CTE after its ``inserted`` one
#: (which returns id, state and created_at) — the in-doubt sweep reads them there.
LIST_PENDING_PG = (
    "listed AS (INSERT INTO journal_open (id, created_at)"
    " SELECT id, created_at FROM inserted WHERE state = 'pending')"
)
INSERT_ENTRY_PG = (
    f"WITH inserted AS ({INSERT_ENTRY}, state, created_at), {LIST_PENDING_PG}"
    " SELECT id FROM inserted"
)
GET_ENTRY = "SELECT * FROM journal WHERE id = ?"
# A financial (deduplicated) entry wins over a management one with the same trace.
FIND_BY_TRACE = (
    "SELECT * FROM journal WHERE terminal_id = ? AND batch = ? AND trace = ? AND direction = ?"
    " ORDER BY dedupe DESC, id DESC LIMIT 1"
)
#: A reservation (positive) only while the original is approved: a void (or
#: reversal) recorded meanwhile refuses it; a release (negative) always applies.
ADD_REFUNDED = (
    "UPDATE journal SET refunded_minor = refunded_minor + ?"
    " WHERE id = ? AND refunded_minor + ? <= ? AND refunded_minor + ? >= 0"
    " AND (? <= 0 OR state = 'approved') RETURNING id"
)
#: The reservation recorded on the entry that made it (with ADD_REFUNDED, one
#: transaction).
SET_RESERVED = "UPDATE journal SET reserved_minor = ?, original_id = ? WHERE id = ? RETURNING id"
#: A reservation's release, once: the entry's share taken (compare-and-set) ...
TAKE_RESERVATION = (
    "UPDATE journal SET reserved_minor = 0"
    " WHERE id = ? AND reserved_minor = ? AND reserved_minor > 0 RETURNING id"
)
#: ... then given back to the original (same transaction).
GIVE_BACK_REFUNDED = (
    "UPDATE journal SET refunded_minor = refunded_minor - ?"
    " WHERE id = (SELECT original_id FROM journal WHERE id = ?) AND refunded_minor >= ?"
    " RETURNING id"
)
DEBIT = (
    f"direction = 'original' AND txn_type IN ({_quoted(DEBIT_TYPES)})"
    " AND state IN ('approved', 'completed')"
)
CREDIT = f"direction = 'original' AND txn_type IN ({_quoted(CREDIT_TYPES)}) AND state = 'approved'"
FIND_DEBIT_OR_CREDIT = (
    f"SELECT * FROM journal WHERE terminal_id = ? AND batch = ? AND trace = ?"
    f" AND (({DEBIT}) OR ({CREDIT})) ORDER BY id DESC LIMIT 1"
)


def update_entry(columns: list[str]) -> str:
    """``columns`` must come from rows.checked_entry_changes (never from a caller)."""
    assignments = ", ".join(f"{column} = ?" for column in columns)
    return f"UPDATE journal SET {assignments} WHERE id = ?"


def transition(from_state_count: int) -> str:
    return (
        f"UPDATE journal SET state = ? WHERE id = ? AND state IN ({marks(from_state_count)})"
        " RETURNING id"
    )


def finish_entry(columns: list[str], from_state_count: int) -> str:
    """Compare-and-set of the state with the other outcome columns in ONE statement;
    ``columns`` must come from rows.checked_entry_changes (never from a caller)."""
    assignments = ", ".join(f"{column} = ?" for column in columns)
    return (
        f"UPDATE journal SET {assignments} WHERE id = ?"
        f" AND state IN ({marks(from_state_count)}) RETURNING id"
    )


#: find_preauth's type test as a literal: the pre-auth code index (migration 0035)
#: holds only rows meeting it, and PostgreSQL's generic plan (the one a prepared
#: statement keeps) knows no parameter value, so it could not use the index for
#: ``txn_type = $n`` (SQLite looks at the bound value; the literal suits both).
PREAUTH_ONLY = f"txn_type = '{TxnType.PREAUTH.value}'"
#: The column find_preauth compares the auth code with: on PostgreSQL since
#: migration 0037 a generated copy of ``auth_code`` kept for pre-authorizations
#: only, which its index names (a purchase's outcome then changes no indexed
#: column, and PostgreSQL writes it as a HOT update).
PREAUTH_CODE = "auth_code"
PREAUTH_CODE_PG = "preauth_code"


def find_original(conditions: list[str]) -> str:
    """Latest original entry matching ``conditions`` (each a ``column = ?`` test);
    a financial entry wins over a management one (a sign-in answer has an RRN too)."""
    where = " AND ".join(["direction = 'original'", *conditions])
    return f"SELECT * FROM journal WHERE {where} ORDER BY dedupe DESC, id DESC LIMIT 1"


# --- store-and-forward ---------------------------------------------------------
# Re-enqueueing the same entry touches nothing but returns the existing id.
ENQUEUE_SAF = (
    _insert("saf", ("entry_id", "payload", "attempts", "next_attempt_at", "created_at"))
    + " ON CONFLICT (entry_id) DO UPDATE SET entry_id = excluded.entry_id RETURNING id"
)
_UNDELIVERED = "delivered_at IS NULL"
SELECT_DUE_SAF = (
    f"SELECT * FROM saf WHERE {_UNDELIVERED} AND next_attempt_at <= ?"
    " ORDER BY next_attempt_at, id LIMIT ?"
)
RESCHEDULE_SAF = "UPDATE saf SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?"
# Never deleted: the row keeps the entry's one 0420 (UNIQUE entry_id) for ever.
COMPLETE_SAF = "UPDATE saf SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL"
SAF_DEPTH = f"SELECT count(*) AS n FROM saf WHERE {_UNDELIVERED}"
GET_SAF = "SELECT * FROM saf WHERE entry_id = ?"
# Entries whose request may have reached the network (network STAN journaled before
# sending) and whose switch never recorded an answer.
IN_DOUBT = (
    "SELECT * FROM journal WHERE state = 'pending' AND created_at < ? ORDER BY created_at LIMIT ?"
)
#: PostgreSQL since migration 0037: the pending entries are listed in
#: journal_open (by the insert statements, ``LIST_PENDING_PG``), and no index of
#: the journal names its state.  The sweep first drops the listed entries that
#: are no longer pending (no write changes a state to pending) or no longer
#: exist, then reads the rest.
IN_DOUBT_PG = (
    "SELECT j.* FROM journal_open o JOIN journal j ON j.id = o.id"
    " WHERE o.created_at < ? AND j.state = 'pending' ORDER BY o.created_at, o.id LIMIT ?"
)
#: The pending entries (SQLite: over the partial index journal_pending).
OPEN_ENTRIES = "SELECT count(*) AS n FROM journal WHERE state = 'pending'"
#: PostgreSQL: the rows of the list the sweep reads, and those still pending
#: (the others ended since the last cleanup, CLOSE_OPEN_PG).
OPEN_ENTRIES_PG = (
    "SELECT count(*) AS listed, count(*) FILTER (WHERE j.state = 'pending') AS pending"
    " FROM journal_open o LEFT JOIN journal j ON j.id = o.id"
)
CLOSE_OPEN_PG = (
    "DELETE FROM journal_open o WHERE NOT EXISTS"
    " (SELECT 1 FROM journal j WHERE j.id = o.id AND j.state = 'pending')"
)
#: Entries that ended not approved still carrying a reservation in their original
#: (a release that failed): the terms of migration 0032's partial index (on
#: PostgreSQL, since 0037, its generated column ``STRANDED_PG``).
STRANDED = "reserved_minor > 0 AND state IN ('declined', 'timed_out', 'reversed')"
STRANDED_PG = "reservation_stranded"
STRANDED_RESERVATIONS = (
    "SELECT * FROM journal WHERE {stranded}"
    " AND created_at < ?{after} ORDER BY created_at, id LIMIT ?"
)
#: The next page: after the last row of the previous one (the index's order).
STRANDED_AFTER = " AND (created_at, id) > (?, ?)"

# --- reversals waiting for the HSM -------------------------------------------
DEFER_REVERSAL = (
    _insert(
        "deferred_reversals",
        ("entry_id", "body", "tak_lmk", "attempts", "next_attempt_at", "created_at"),
    )
    + " ON CONFLICT (entry_id) DO NOTHING"
)
SELECT_DUE_DEFERRED = (
    "SELECT * FROM deferred_reversals WHERE next_attempt_at <= ?"
    " ORDER BY next_attempt_at, entry_id LIMIT ?"
)
RESCHEDULE_DEFERRED = (
    "UPDATE deferred_reversals SET attempts = attempts + 1, next_attempt_at = ? WHERE entry_id = ?"
)
FINISH_DEFERRED = "DELETE FROM deferred_reversals WHERE entry_id = ?"


def lease_due_saf(*, skip_locked: bool) -> str:
    """Take due items and push their next attempt to the lease expiry, so a second
    instance polling meanwhile does not send them too (params: lease_until, now, limit)."""
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    return (
        "UPDATE saf SET next_attempt_at = ? WHERE id IN (SELECT id FROM saf"
        f" WHERE {_UNDELIVERED} AND next_attempt_at <= ?"
        f" ORDER BY next_attempt_at, id LIMIT ?{lock})"
        " RETURNING *"
    )


# --- settlement and batch upload ---------------------------------------------
_AMOUNT = "COALESCE(amount_minor, 0)"
BATCH_TOTALS = (
    "SELECT CASE WHEN card_class = '01' THEN '01' ELSE '00' END AS class,"
    f" CAST(SUM(CASE WHEN {DEBIT} THEN 1 ELSE 0 END) AS BIGINT) AS debit_count,"
    f" CAST(SUM(CASE WHEN {DEBIT} THEN {_AMOUNT} ELSE 0 END) AS BIGINT) AS debit_amount_minor,"
    f" CAST(SUM(CASE WHEN {CREDIT} THEN 1 ELSE 0 END) AS BIGINT) AS credit_count,"
    f" CAST(SUM(CASE WHEN {CREDIT} THEN {_AMOUNT} ELSE 0 END) AS BIGINT) AS credit_amount_minor"
    " FROM journal WHERE terminal_id = ? AND batch = ? GROUP BY 1"
)
RECORD_SETTLEMENT = (
    _insert("settlements", SETTLEMENT_COLUMNS)
    + " ON CONFLICT (terminal_id, batch) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SETTLEMENT_COLUMNS[3:])
    + " RETURNING id"
)
GET_SETTLEMENT = "SELECT * FROM settlements WHERE terminal_id = ? AND batch = ?"
RECORD_UPLOAD = (
    _insert("uploads", (*UPLOAD_COLUMNS, "created_at"))
    + " ON CONFLICT (terminal_id, batch, trace) DO NOTHING RETURNING trace"
)
LIST_UPLOADS = "SELECT * FROM uploads WHERE terminal_id = ? AND batch = ? ORDER BY trace"
LIST_ENTRIES = "SELECT * FROM journal WHERE terminal_id = ? AND batch = ? ORDER BY id"


def list_settlements(conditions: list[str]) -> str:
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT * FROM settlements{where} ORDER BY settled_at, terminal_id, batch"


def batch_summaries(by_terminal: bool) -> str:
    """Per (terminal, batch) counts and amounts of financial originals."""
    where = " WHERE terminal_id = ?" if by_terminal else ""
    return (
        "SELECT terminal_id, MAX(merchant_id) AS merchant_id, batch,"
        " CAST(SUM(CASE WHEN dedupe AND direction = 'original' THEN 1 ELSE 0 END) AS BIGINT)"
        " AS txn_count,"
        f" CAST(SUM(CASE WHEN {DEBIT} THEN 1 ELSE 0 END) AS BIGINT) AS debit_count,"
        f" CAST(SUM(CASE WHEN {DEBIT} THEN {_AMOUNT} ELSE 0 END) AS BIGINT)"
        " AS debit_amount_minor,"
        f" CAST(SUM(CASE WHEN {CREDIT} THEN 1 ELSE 0 END) AS BIGINT) AS credit_count,"
        f" CAST(SUM(CASE WHEN {CREDIT} THEN {_AMOUNT} ELSE 0 END) AS BIGINT)"
        " AS credit_amount_minor"
        f" FROM journal{where} GROUP BY terminal_id, batch"
    )


def upload_counts(by_terminal: bool) -> str:
    where = " WHERE terminal_id = ?" if by_terminal else ""
    return (
        "SELECT terminal_id, batch, count(*) AS records,"
        " CAST(SUM(CASE WHEN matched THEN 0 ELSE 1 END) AS BIGINT) AS mismatches"
        f" FROM uploads{where} GROUP BY terminal_id, batch"
    )


def settlement_flags(by_terminal: bool) -> str:
    where = " WHERE terminal_id = ?" if by_terminal else ""
    return (
        "SELECT terminal_id, merchant_id, batch, domestic_balanced, foreign_balanced"
        f" FROM settlements{where}"
    )


def open_batches(by_terminal: bool) -> str:
    where = " WHERE terminal_id = ?" if by_terminal else ""
    return f"SELECT terminal_id, merchant_id, batch FROM terminals{where}"


# --- sequences (SQLite; PostgreSQL uses SEQUENCE objects) -----------------------
NEXT_SEQUENCE = (
    "INSERT INTO sequences (name, value) VALUES (?, 1)"
    " ON CONFLICT (name) DO UPDATE SET value = sequences.value + 1 RETURNING value"
)
