"""The risk engine's velocity counters in the store (``posp.risk.counters``
Protocol), written over a SqlStore's ``_read``/``_write`` primitives and the
``risk_counters`` table (migration 0010).

Invariants:
* ``check_and_add`` is atomic on both databases, never a read-then-write two
  instances could interleave.  On PostgreSQL it is ONE statement: a CTE locks
  the rows ``FOR UPDATE`` in key order (no deadlock between two instances),
  decides on the locked (latest) values and updates in the same statement.  On
  SQLite it is ONE writer job (``sqlite_check_and_add``): the writer's
  transaction began IMMEDIATE, so it holds the database's write lock against
  every other writer, thread or process, from the read to the commit; the
  decision is ``CounterAdd.holds_on`` (the Protocol's own rule) and the write
  is one relative upsert of every key, then, only for rows whose expiry an add
  makes later, one update of that expiry (``sqlite_extend``).
* PostgreSQL rows are created on first use (``INSERT ... ON CONFLICT DO
  NOTHING``, keys sorted), then the add is retried: a missing row never counts
  as a pass.  On SQLite the upsert creates them, a missing row reading as zeros.
* On PostgreSQL the SQL text is fixed whatever the number of keys (arrays), so
  each statement is prepared once per connection; on SQLite there is one text
  per number of keys (plain placeholders), few for a ruleset, each prepared once
  per connection as well.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

from posp.errors import StoreError
from posp.risk.counters import AddResult, CounterAdd
from posp.risk.inputs import ZERO, CounterValue
from posp.store.pg_holds import CREATE as CREATE_COUNTERS
from posp.store.pg_holds import counter_rows
from posp.store.postgres import PostgresStore
from posp.store.sql_store import SqlStore
from posp.store.sqlite import SqliteStore

_COLUMNS = "counter_key, amount_minor, txn_count, refunded_minor, last_at_s"
_PASSES = (
    "(r.ma IS NULL OR l.amount_minor + r.a <= r.ma)"
    " AND (r.mnet IS NULL OR l.amount_minor - l.refunded_minor + r.a <= r.mnet)"
    " AND (r.mc IS NULL OR l.txn_count + r.n <= r.mc)"
    " AND (r.mg IS NULL OR l.txn_count <= 0 OR l.last_at_s + r.mg <= r.t)"
)
_SET = (
    "amount_minor = {t}.amount_minor + r.a, txn_count = {t}.txn_count + r.n,"
    " refunded_minor = {t}.refunded_minor + r.f,"
    " last_at_s = CASE WHEN r.n > 0 AND r.t > {t}.last_at_s THEN r.t ELSE {t}.last_at_s END,"
    " expires_on = CASE WHEN r.e > {t}.expires_on THEN r.e ELSE {t}.expires_on END"
)

# --- PostgreSQL: ten arrays, one row of the request per index --------------------
_PG_REQ = (
    "req (k, a, n, f, t, e, ma, mnet, mc, mg) AS (SELECT * FROM unnest("
    "?::text[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::text[],"
    " ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[]))"
)
PG_CHECK_AND_ADD = (
    f"WITH {_PG_REQ},"
    f" locked AS (SELECT {_COLUMNS} FROM risk_counters"
    "  WHERE counter_key IN (SELECT k FROM req) ORDER BY counter_key FOR UPDATE),"
    " verdict AS (SELECT count(*) = (SELECT count(*) FROM req)"
    f"  AND coalesce(bool_and({_PASSES}), TRUE) AS pass"
    "  FROM locked l JOIN req r ON r.k = l.counter_key),"
    f" changed AS (UPDATE risk_counters c SET {_SET.format(t='c')}"
    "  FROM req r, verdict v WHERE c.counter_key = r.k AND v.pass RETURNING c.counter_key)"
    f" SELECT v.pass, {', '.join('l.' + c.strip() for c in _COLUMNS.split(','))}"
    " FROM verdict v LEFT JOIN locked l ON TRUE"
)
#: Counter rows created when missing (keys in order): the hold batches' statement.
PG_CREATE = CREATE_COUNTERS
PG_SNAPSHOT = f"SELECT {_COLUMNS} FROM risk_counters WHERE counter_key = ANY(?::text[])"

# --- SQLite ---------------------------------------------------------------------
# Plain placeholders, one statement text per number of keys (a ruleset gives a
# handful; the connections' statement caches keep them prepared).  They replaced
# statements over one JSON parameter (``json_each``): SQLite parses an element's
# JSON again for each ``->>``, and a hold of eight adds cost ≈ 150 µs of writer
# CPU against ≈ 88 µs now (the read, the decision and the upsert, no commit).
_UPSERT_ROW = "(?, ?, ?, ?, ?, ?)"
#: The SQLite parameters of one add: key, amount, count, refunded, last use (0
#: for an add that counts no use), expiry; ``sqlite_add`` flattens them.
_ROW_FIELDS = 6
#: Rows per statement at most (SQLite allows 32,766 parameters; a hold has a
#: few dozen keys at most, a bulk apply is split).
_MAX_ROWS = 1_000


@functools.lru_cache(maxsize=64)
def sqlite_read(count: int) -> str:
    """The values and expiry of ``count`` counters by key (missing ones absent)."""
    marks = ", ".join("?" * count)
    return f"SELECT {_COLUMNS}, expires_on FROM risk_counters WHERE counter_key IN ({marks})"


@functools.lru_cache(maxsize=64)
def sqlite_upsert(count: int) -> str:
    """Relative adds of ``count`` rows that create their rows when missing, in one
    statement.  The caps are decided before it (``sqlite_check_and_add``, under
    the writer's lock).  An existing row's expiry is left to ``sqlite_extend``:
    SQLite rewrites a row's entry in the ``expires_on`` index whenever an UPDATE
    sets the column, changed or not, and those entries (one date, keys in key
    order) lie on pages as scattered as the rows': setting it here doubled the
    pages each hold wrote to the WAL (8.5 against 4.1 per transaction of six adds)."""
    return (
        f"INSERT INTO risk_counters ({_COLUMNS}, expires_on)"
        f" VALUES {', '.join([_UPSERT_ROW] * count)}"
        " ON CONFLICT (counter_key) DO UPDATE SET"
        " amount_minor = amount_minor + excluded.amount_minor,"
        " txn_count = txn_count + excluded.txn_count,"
        " refunded_minor = refunded_minor + excluded.refunded_minor,"
        " last_at_s = CASE WHEN excluded.txn_count > 0 AND excluded.last_at_s > last_at_s"
        " THEN excluded.last_at_s ELSE last_at_s END"
    )


@functools.lru_cache(maxsize=64)
def sqlite_extend(count: int) -> str:
    """The later expiry ?1 of ``count`` existing rows, written only where it grows:
    at most once a business day per row (a week's, a month's, a last use's row
    is fed on several days; a day's row expires with its day)."""
    marks = ", ".join("?" * count)
    return (
        "UPDATE risk_counters SET expires_on = ?1"
        f" WHERE counter_key IN ({marks}) AND expires_on < ?1"
    )


PURGE = "DELETE FROM risk_counters WHERE expires_on < ? RETURNING counter_key"
#: Beginnings of the keys of the layout before migration 0033 (``current_key``);
#: no key of the current layout begins so.  Found after the migration, such a row
#: was written by a process of an older version still running on the database.
LEGACY_PREFIXES = ("c|", "ct", "cn", "m|", "tf|")
_LEGACY_WHERE = " OR ".join(["counter_key {op} ?"] * len(LEGACY_PREFIXES))
SQLITE_LEGACY = (
    "SELECT count(*) FROM (SELECT 1 FROM risk_counters"
    f" WHERE {_LEGACY_WHERE.format(op='GLOB')} LIMIT ?)"
)
PG_LEGACY = (
    "SELECT count(*) FROM (SELECT 1 FROM risk_counters"
    f" WHERE {_LEGACY_WHERE.format(op='LIKE')} LIMIT ?) AS found"
)

#: A statement and its parameters.
Statement = tuple[str, list[Any]]

#: Creating missing rows and retrying: twice is enough (a row once created is
#: never deleted before it expires); a third miss is a store fault.
_ATTEMPTS = 3


class SqlRiskCounters:
    """VelocityCounters on a SqliteStore or PostgresStore (opened by its owner)."""

    def __init__(self, store: SqlStore) -> None:
        if not isinstance(store, (SqliteStore, PostgresStore)):
            raise TypeError(f"risk counters need a SQLite or PostgreSQL store, not {store!r}")
        self._store = store
        self._pg = isinstance(store, PostgresStore)

    async def snapshot(self, keys: Sequence[str]) -> dict[str, CounterValue]:
        if not keys:
            return {}
        if self._pg:
            found = await self._store._point_read("risk_snapshot", PG_SNAPSHOT, [list(keys)])
            return {row["counter_key"]: _value(row) for row in found}
        values: dict[str, CounterValue] = {}
        for start in range(0, len(keys), _MAX_ROWS):
            chunk = keys[start : start + _MAX_ROWS]
            found = await self._store._point_read("risk_snapshot", sqlite_read(len(chunk)), chunk)
            values.update((row[0], CounterValue(row[1], row[2], row[3], row[4])) for row in found)
        return values

    async def check_and_add(
        self, adds: Sequence[CounterAdd], *, then: Statement | None = None
    ) -> AddResult:
        """As the Protocol; ``then`` (a statement, e.g. the record of the hold) runs
        only when the add is applied — in the same transaction on SQLite, right
        after it on PostgreSQL (a crash between leaves counters high, never low)."""
        if not adds:
            return AddResult(True, {})
        if len({a.key for a in adds}) != len(adds):
            raise ValueError("risk_check_and_add: a key appears twice in one call")
        for _ in range(_ATTEMPTS):
            applied, before = await self._attempt(adds, then)
            if applied:
                return AddResult(True, before)
            missing = [a for a in adds if a.key not in before]
            if not missing or self.on_sqlite:  # there the add creates its rows itself
                return AddResult(False, before)
            await self._create(missing)
        raise StoreError("risk_check_and_add: counter rows missing after creation")

    async def apply(self, adds: Sequence[CounterAdd]) -> None:
        result = await self.check_and_add([add.uncapped() for add in adds])
        if not result.applied:  # uncapped adds always pass once their rows exist
            raise StoreError("risk_apply: an uncapped add was refused")

    async def purge_expired(self, today: dt.date) -> int:
        gone = await self._store._write("risk_purge", PURGE, [today.isoformat()])
        return len(gone)

    async def legacy_rows(self, limit: int = 1_000) -> int:
        """How many counters (up to ``limit``) have a key of the layout before
        migration 0033: any at all means an older posp still writes on this
        database, counting its cards apart from this version."""
        if self._pg:
            patterns = [f"{prefix}%" for prefix in LEGACY_PREFIXES]
            found = await self._store._read("risk_legacy_rows", PG_LEGACY, [*patterns, limit])
        else:
            patterns = [f"{prefix}*" for prefix in LEGACY_PREFIXES]
            found = await self._store._read("risk_legacy_rows", SQLITE_LEGACY, [*patterns, limit])
        return int(found[0][0])

    async def _attempt(
        self, adds: Sequence[CounterAdd], then: Statement | None = None
    ) -> tuple[bool, dict[str, CounterValue]]:
        if self._pg:
            columns = pg_columns(adds)
            found = await self._store._counter_write(
                "risk_check_and_add", PG_CHECK_AND_ADD, columns
            )
            before = {r["counter_key"]: _value(r) for r in found if r["counter_key"] is not None}
            passed = bool(found and found[0]["pass"])
            if passed and then is not None:
                await self._store._write("risk_check_and_add_then", *then)
            return passed, before
        assert isinstance(self._store, SqliteStore)  # checked in __init__
        result: AddResult = await self._store._write_job(
            "risk_check_and_add", functools.partial(_sqlite_job, adds, then)
        )
        return result.applied, result.before

    @property
    def on_sqlite(self) -> bool:
        return isinstance(self._store, SqliteStore)

    async def create_missing(self, adds: Sequence[CounterAdd]) -> None:
        """Create the rows of ``adds`` a caller knows missing, so ``check_and_add``
        applies at its first attempt (SQLite: nothing to do, the add creates them
        in its own transaction)."""
        if self._pg:
            await self._create(adds)

    async def _create(self, adds: Sequence[CounterAdd]) -> None:
        """PostgreSQL: the rows of ``adds`` created when missing (autocommit)."""
        await self._store._counter_write("risk_create", PG_CREATE, [*counter_rows(adds)])


def sqlite_check_and_add(
    connection: Any, adds: Sequence[CounterAdd], prepared: SqliteAdd | None = None
) -> AddResult:
    """Check-and-add on SQLite inside a writer job: read the rows (values and
    expiry), decide with ``CounterAdd.holds_on`` (the contract's own rule, a
    missing row read as zeros), apply every add in one upsert statement that
    creates the missing rows, and raise the expiry of the rows whose expiry an
    add makes later (``sqlite_extend``: rarely, see there).  Atomic because the
    writer's transaction began IMMEDIATE: it holds the database's write lock, so
    no other writer (thread or process) can change a counter between the read
    and the write.  ``prepared``: the parameters built beforehand
    (``sqlite_add``), so that less Python runs while the lock is held."""
    keys, params, capped = prepared or sqlite_add(adds)
    found: list[Any] = []
    for start in range(0, len(keys), _MAX_ROWS):
        chunk = keys[start : start + _MAX_ROWS]
        found += connection.execute(sqlite_read(len(chunk)), chunk).fetchall()
    before = {row[0]: CounterValue(row[1], row[2], row[3], row[4]) for row in found}
    if capped:
        for add in adds:
            if not add.holds_on(before.get(add.key, ZERO)):
                return AddResult(False, before)
    step = _MAX_ROWS * _ROW_FIELDS
    for start in range(0, len(params), step):
        chunk = params[start : start + step]
        connection.execute(sqlite_upsert(len(chunk) // _ROW_FIELDS), chunk)
    held = {row[0]: row[5] for row in found}
    grown: dict[str, list[str]] = {}
    for index, key in enumerate(keys):
        expiry = params[index * _ROW_FIELDS + 5]
        if key in held and held[key] < expiry:
            grown.setdefault(expiry, []).append(key)
    for expiry, grown_keys in grown.items():
        connection.execute(sqlite_extend(len(grown_keys)), [expiry, *grown_keys])
    return AddResult(True, before)


#: The parameters of ``sqlite_check_and_add``: the keys, the upsert's
#: parameters (``_ROW_FIELDS`` per add, flat), whether any add has a cap.
SqliteAdd = tuple[list[str], list[Any], bool]

_NO_CAPS = (None, None, None, None)


def sqlite_add(adds: Sequence[CounterAdd]) -> SqliteAdd:
    """``sqlite_check_and_add``'s parameters for ``adds`` (outside the writer job).
    Each key at most once: the upsert would keep a repeated new key's first
    expiry, not the later one."""
    keys = [a.key for a in adds]
    if len(set(keys)) != len(keys):
        raise ValueError("risk_check_and_add: a key appears twice in one call")
    params: list[Any] = []
    for a in adds:
        params += (
            a.key,
            a.amount_minor,
            a.txn_count,
            a.refunded_minor,
            a.at_s if a.txn_count > 0 else 0,
            a.expires_on.isoformat(),
        )
    capped = any(a[6:] != _NO_CAPS for a in adds)
    return keys, params, capped


def _sqlite_job(adds: Sequence[CounterAdd], then: Statement | None, connection: Any) -> AddResult:
    """One writer job: check-and-add, and ``then`` only if the add applied."""
    result = sqlite_check_and_add(connection, adds)
    if result.applied and then is not None:
        connection.execute(*then).fetchall()
    return result


def _row(add: CounterAdd) -> list[Any]:
    return [
        add.key,
        add.amount_minor,
        add.txn_count,
        add.refunded_minor,
        add.at_s,
        add.expires_on.isoformat(),
        add.max_amount_minor,
        add.max_net_minor,
        add.max_count,
        add.min_gap_s,
    ]


def pg_columns(adds: Sequence[CounterAdd]) -> list[list[Any]]:
    """The parameters of PG_CHECK_AND_ADD: one array per column."""
    return [list(column) for column in zip(*map(_row, adds), strict=True)]


def value_of(row: Any) -> CounterValue:
    """A counter row's values."""
    return _value(row)


def _value(row: Any) -> CounterValue:
    return CounterValue(
        int(row["amount_minor"]),
        int(row["txn_count"]),
        int(row["refunded_minor"]),
        int(row["last_at_s"]),
    )
