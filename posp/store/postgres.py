"""PostgresStore: the store on PostgreSQL through an asyncpg pool, for running
several switch instances on one database.

Invariants:
* Every operation is one SQL statement in autocommit, so exactly-once state
  changes rely on PostgreSQL row locks: ``UPDATE ... WHERE state IN (...)
  RETURNING`` re-checks the condition after waiting for a concurrent writer.
* A unique index on (terminal_id, batch, trace, direction) for the
  deduplicated entries makes a second instance's insert of the same request
  fail with ``DuplicateTransaction``.  Since migration 0038 it is
  ``journal_trace``, whose last key ``CASE WHEN dedupe THEN 0 END`` is NULL
  (never conflicting) for the other entries; it also serves the trace and
  batch lookups, so an insert writes one index entry for both.
* ``next_sequence`` uses PostgreSQL SEQUENCE objects (``posp_seq_<name>``,
  created on first use): every instance draws from one counter, and unlike a
  counter row they never serialize concurrent transactions on a row lock.
* ``due_saf`` leases rows with ``FOR UPDATE SKIP LOCKED``: two instances
  polling at once get disjoint items.
* Migrations run under a transaction-level advisory lock, so instances
  starting together apply each migration once.
* asyncpg prepares and caches each statement per connection (prepared
  statements without bookkeeping here).
* A connection goes back to the pool without asyncpg's reset query (one round
  trip per call, not two): the store leaves no session state behind.
* Group commit for the two journal writes of every financial request
  (``posp.store.group_commit``): pending inserts that arrive while another is
  being committed go together in ONE multi-row ``INSERT`` and one commit, and so
  do outcome updates (``finish_entry``); both kinds queue together, and the
  inserts with the largest kind of outcome of a batch go in ONE statement
  (a writable CTE) and one commit.  Each caller resumes only after the
  commit that holds its row returned; a duplicate in a batch is left out by
  ``ON CONFLICT ... DO NOTHING`` and only its caller gets
  ``DuplicateTransaction``; any other error of a batch statement makes each of
  its items run alone, so every caller gets exactly its own outcome (a
  deadlock too: the insert batch takes its keys in order, the outcome batch's
  lock order follows the join plan).  Each other kind of outcome change is its
  own statement and commit, and a failure is reported to that part's callers
  only.  A lone request runs the plain
  single-row statement (no added delay).
* The group commit's batch statements run on one connection of the keyed pool,
  held while batches follow one another and given back when the queue runs
  dry, after any failure and at close (``_journal_fetch``): a pool acquire and
  release cost the switch about as much CPU as binding the batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from posp.errors import ConfigError, DuplicateTransaction, StoreError, StoreUnavailable
from posp.log import get_logger
from posp.store import queries as q
from posp.store import rows
from posp.store.api import EntryThen, JournalEntry, OpenEntries
from posp.store.group_commit import GroupCommit
from posp.store.migrations import CREATE_TABLE_SQL, load_migrations
from posp.store.pg_holds import CREATE as CREATE_COUNTERS
from posp.store.pg_holds import BatchHold, counter_rows, entry_outcomes, write_batch
from posp.store.queries import numbered
from posp.store.sql_store import DEFAULT_SAF_LEASE_S, SqlStore

#: What ``_all``'s awaitables give.
A = TypeVar("A")
_log = get_logger("posp.store.postgres")

DEFAULT_POOL_SIZE = 10
#: How long one migration may run (``migrate_timeout_s`` in the store URL).
DEFAULT_MIGRATE_TIMEOUT_S = 3600.0
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SEQUENCE_NAME = re.compile(r"^[a-z0-9_]{1,50}$")
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
    # the driver's own state error, e.g. "cannot switch to state ...": a statement
    # on a connection the server has just ended, whose end the driver has not yet
    # read (the statement was refused before it was sent)
    asyncpg.InternalClientError,
)


@contextmanager
def _translated(op: str) -> Iterator[None]:
    """Driver errors as the store's exceptions; the driver's text (which may quote
    values) is not passed on, only the operation and the error class."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise DuplicateTransaction(f"{op}: unique constraint violated") from exc
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise StoreError(f"{op}: integrity constraint violated ({exc.sqlstate})") from exc
    except (ValueError, TypeError, OverflowError) as exc:  # asyncpg's client-side DataError
        raise StoreError(f"{op}: invalid value ({type(exc).__name__})") from exc
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"{op}: database unavailable ({type(exc).__name__})") from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"{op}: database error {exc.sqlstate} ({type(exc).__name__})") from exc


def _server_of(dsn: str) -> str:
    """``host:port/database`` of a DSN, for error messages: never user or password."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


class PostgresStore(SqlStore):
    """The store on PostgreSQL.  ``schema`` (created when missing) isolates a
    deployment or a test; None uses the server's default search_path."""

    def __init__(
        self,
        dsn: str,
        *,
        node_id: str = "",
        pool_size: int = DEFAULT_POOL_SIZE,
        schema: str | None = None,
        saf_lease_s: float = DEFAULT_SAF_LEASE_S,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float = 10.0,
        migrate_timeout_s: float = DEFAULT_MIGRATE_TIMEOUT_S,
    ) -> None:
        super().__init__(node_id=node_id, saf_lease_s=saf_lease_s)
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ConfigError("store schema must be lower-case letters, digits and _")
        if pool_size < 1:
            raise ConfigError("store pool_size must be at least 1")
        if not migrate_timeout_s > 0:
            raise ConfigError("store migrate_timeout_s must be a positive number of seconds")
        self.dsn = dsn
        self.schema = schema
        self.pool_size = pool_size
        #: One sweeper at a time empties journal_open (``in_doubt_entries``).
        self._sweep_lock_key = zlib.crc32(f"posp.store.journal_open:{schema or ''}".encode())
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        #: A migration's own bound (0037 rewrites the journal: minutes for a large one).
        self._migrate_timeout_s = migrate_timeout_s
        self._pool: asyncpg.Pool | None = None
        #: Statements that read or write rows by key — the risk counters'
        #: (``_point_read``, ``_counter_write``, the hold batches) and the
        #: journal's outcome batches — run on a pool of their own with
        #: ``enable_seqscan = off``.  With the default settings a generic plan
        #: cached while a table was small (a fresh database) kept scanning it whole
        #: as it grew, until the next ANALYZE: the counters' lookups (3.5 ms of
        #: server CPU per purchase in a 20 s run), and the outcome batch's
        #: ``UPDATE ... FROM unnest(...)`` as a hash join over the whole journal
        #: (330 sequential scans reading 4.1 M rows in 15 s).  With sequential
        #: scans priced out the cached generic plans use the primary key at any
        #: size, and nothing is planned again per execution (``force_custom_plan``,
        #: used before for the counters, cost ≈ 15 % more server CPU).  The main
        #: pool keeps the default: there the setting made the full path slower.
        #: The journal's batch inserts run here too, on the group commit's held
        #: connection (their plans scan no table: the same either way).
        self._keyed_pool: asyncpg.Pool | None = None
        #: The journal's two hot writes — pending entries and outcomes — share one
        #: group commit: a batch holding both goes out as one statement and one
        #: commit (``_journal_batch``).
        self._journal: GroupCommit[_Insert | _Finish, int] = self._journal_commit()
        #: The keyed pool's connection the journal's group commit holds while its
        #: batches follow one another (``_journal_fetch``): no pool acquire and
        #: release per statement (about 35 µs of the switch's CPU each).  Given back
        #: whenever its queue runs dry, after any failure and at close (a writer
        #: cancelled between two batches, at the loop's shutdown, leaves it held
        #: until then).
        self._held: asyncpg.Connection | None = None
        self._held_busy = False
        self._holds: GroupCommit[tuple[list[Any], BatchHold], int] = GroupCommit(self._hold_batch)

    _preauth_code = q.PREAUTH_CODE_PG  # migration 0037: HOT outcome updates
    _stranded = q.STRANDED_PG
    _insert_entry = q.INSERT_ENTRY_PG

    @classmethod
    def from_url(cls, url: str, *, node_id: str = "") -> PostgresStore:
        """Take ``pool_size``, ``schema`` and ``migrate_timeout_s`` out of the URL's
        query string."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        pool_text = query.pop("pool_size", str(DEFAULT_POOL_SIZE))
        schema = query.pop("schema", None)
        migrate_text = query.pop("migrate_timeout_s", str(DEFAULT_MIGRATE_TIMEOUT_S))
        if not pool_text.isdigit():
            raise ConfigError("store url: pool_size must be a positive integer")
        try:
            migrate_timeout_s = float(migrate_text)
        except ValueError:
            raise ConfigError("store url: migrate_timeout_s must be a number of seconds") from None
        dsn = urlunsplit(parts._replace(query=urlencode(query)))
        return cls(
            dsn,
            node_id=node_id,
            pool_size=int(pool_text),
            schema=schema,
            migrate_timeout_s=migrate_timeout_s,
        )

    # --- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        """Connect the pool and apply migrations."""
        if self._pool is not None:
            return
        settings = {"search_path": self.schema} if self.schema else {}
        with _translated(f"open {_server_of(self.dsn)}"):
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self._connect_timeout_s,
                command_timeout=self._command_timeout_s,
                server_settings=settings or None,
                reset=_keep_session,
            )
        self._pool = pool
        try:
            with _translated(f"open {_server_of(self.dsn)}"):
                self._keyed_pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=1,
                    max_size=max(2, self.pool_size // 2),
                    timeout=self._connect_timeout_s,
                    command_timeout=self._command_timeout_s,
                    server_settings={**settings, "enable_seqscan": "off"},
                    reset=_keep_session,
                )
        except BaseException:
            await self.close()
            raise
        try:
            with _translated("migrate"):
                await self._migrate(pool)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._journal.close()
        await self._holds.close()
        await self._release_held()
        self._journal = self._journal_commit()  # the store may be opened again
        self._holds = GroupCommit(self._hold_batch)
        pools = (self._keyed_pool, self._pool)
        self._pool = self._keyed_pool = None
        for pool in pools:
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), timeout=self._command_timeout_s)
                except Exception:  # a timeout, or a close that failed: end it anyway
                    pool.terminate()

    async def _migrate(self, pool: asyncpg.Pool) -> None:
        """Apply missing migrations under an advisory lock keyed by the schema, so
        concurrent starts serialize and the second finds the work done."""
        lock_key = zlib.crc32(f"posp.store.migrate:{self.schema or ''}".encode())
        async with pool.acquire() as connection, connection.transaction():
            # another instance may be migrating: wait as long as a migration may run
            await connection.execute(
                "SELECT pg_advisory_xact_lock($1)", lock_key, timeout=self._migrate_timeout_s
            )
            if self.schema:
                await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await connection.execute(CREATE_TABLE_SQL)
            applied = {r["version"] for r in await connection.fetch(_APPLIED)}
            for migration in load_migrations("postgres"):
                if migration.version in applied:
                    continue
                await connection.execute(migration.sql, timeout=self._migrate_timeout_s)
                await connection.execute(
                    _RECORD, migration.version, migration.name, rows.now_utc().isoformat()
                )

    # --- primitives --------------------------------------------------------------------
    def _time(self, value: dt.datetime) -> dt.datetime:
        return rows.as_utc(value)

    @property
    def _skip_locked(self) -> bool:
        return True

    def _require_pool(self, op: str, *, keyed: bool = False) -> asyncpg.Pool:
        """The main pool, or (``keyed``) the pool of the statements by key."""
        pool = self._keyed_pool if keyed else self._pool
        if pool is None:
            raise StoreError(f"{op}: the store is not open")
        return pool

    async def _read(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await _fetch(self._require_pool(op), op, sql, params)

    async def _write(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._read(op, sql, params)  # autocommit: returns after COMMIT

    async def _point_read(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A statement by key, on the keyed pool (see ``_keyed_pool``)."""
        return await _fetch(self._require_pool(op, keyed=True), op, sql, params)

    async def _counter_write(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._point_read(op, sql, params)  # autocommit: returns after COMMIT

    async def _cas_then(
        self,
        op: str,
        cas: tuple[str, Sequence[Any]],
        then: tuple[str, Sequence[Any]],
        *,
        then_required: bool = False,
    ) -> bool:
        pool = self._require_pool(op)
        with _translated(op):
            async with pool.acquire() as connection, connection.transaction():
                if not await connection.fetch(numbered(cas[0]), *cas[1]):
                    return False
                if not await connection.fetch(numbered(then[0]), *then[1]) and then_required:
                    raise StoreError(f"{op}: its second statement changed nothing")
                return True

    # --- group commit of the journal's hot writes ----------------------------------------
    def _journal_commit(self) -> GroupCommit[_Insert | _Finish, int]:
        return GroupCommit(self._journal_batch, idle=self._release_held)

    async def _journal_fetch(self, op: str, sql: str, params: Sequence[Any]) -> list[Any]:
        """One statement of a journal batch (autocommit), on the connection held
        across the group commit's batches; a part of a batch that runs beside
        another takes a connection of the keyed pool, as any statement by key."""
        if self._held_busy:
            return await self._point_read(op, sql, params)
        pool = self._require_pool(op, keyed=True)
        self._held_busy = True
        try:
            if self._held is not None and _lost(self._held):
                await self._release_held()  # the pool replaces it
            with _translated(op):
                if self._held is None:
                    self._held = await pool.acquire()
                found: list[Any] = await self._held.fetch(numbered(sql), *params)
            return found
        except BaseException:
            # after any failure (a lost connection, a cancelled statement, a
            # duplicate) the pool judges the connection: it resets or replaces it
            await self._release_held()
            raise
        finally:
            self._held_busy = False

    async def _release_held(self) -> None:
        """Give the held journal connection back to its pool (never raises)."""
        held, self._held = self._held, None
        pool = self._keyed_pool
        if held is None or pool is None:
            return
        try:
            await pool.release(held)
        except Exception as exc:  # the pool terminates a connection it cannot reset
            _log.warning("journal connection not given back", error_type=type(exc).__name__)

    async def _insert_entry_row(self, values: list[Any]) -> int:
        self._require_pool("insert_entry")
        key = _dedupe_key(values)
        return await self._journal.submit(_Insert(values), None if key is None else ("i", key))

    async def _journal_batch(self, batch: list[_Insert | _Finish]) -> list[int | BaseException]:
        """Pending entries and outcomes queued together, written in parts that run
        side by side, each part's callers seeing only their own part's result:

        * the inserts with the largest kind of outcome (the same columns and
          from-states) in ONE statement and one commit (``_insert_and_finish``):
          a commit and a round trip fewer than writing them apart.  Should that
          statement fail other than on a lost connection (a value the driver
          refuses, a deadlock: nothing of it committed) the inserts and the
          outcomes are written apart, as below;
        * inserts alone: one multi-row insert (``_insert_batch``);
        * each other kind of outcome: one UPDATE (``_finish_kind``).

        An outcome's result is 1 when its entry was changed, 0 when the
        compare-and-set found another state."""
        outcomes: list[int | BaseException] = [0] * len(batch)
        inserts = [i for i, item in enumerate(batch) if isinstance(item, _Insert)]
        kinds: dict[tuple[tuple[str, ...], tuple[str, ...] | None], list[int]] = {}
        for index, item in enumerate(batch):
            if isinstance(item, _Finish):
                kinds.setdefault((item.columns, item.from_states), []).append(index)

        async def part(indexes: list[int], write: Callable[[], Awaitable[Sequence[Any]]]) -> None:
            try:
                found: Sequence[Any] = await write()
            except Exception as exc:  # this part's callers only: the others go on
                found = [exc] * len(indexes)
            for index, outcome in zip(indexes, found, strict=True):
                outcomes[index] = int(outcome) if isinstance(outcome, bool) else outcome

        def insert_alone(indexes: list[int]) -> Awaitable[None]:
            values = [cast(_Insert, batch[i]).values for i in indexes]
            return part(indexes, lambda: self._insert_batch(values))

        def finish_alone(indexes: list[int]) -> Awaitable[None]:
            finishes = [cast(_Finish, batch[i]) for i in indexes]
            return part(indexes, lambda: self._finish_kind(finishes))

        async def combined(finishes: list[int]) -> None:
            try:
                found: Sequence[Any] = await self._insert_and_finish(batch, inserts, finishes)
            except Exception as exc:
                if isinstance(exc, StoreError) and not isinstance(exc, StoreUnavailable):
                    # the statement failed, nothing of it committed: the parts apart
                    await asyncio.gather(insert_alone(inserts), finish_alone(finishes))
                    return
                # a lost connection (nothing known to be committed) or a bug: its
                # callers' error, never written twice
                found = [exc] * (len(inserts) + len(finishes))
            for index, outcome in zip((*inserts, *finishes), found, strict=True):
                outcomes[index] = outcome

        parts: list[Awaitable[None]] = []
        if inserts and kinds:
            largest = max(kinds, key=lambda kind: len(kinds[kind]))
            parts.append(combined(kinds.pop(largest)))
        elif inserts:
            parts.append(insert_alone(inserts))
        parts += [finish_alone(indexes) for indexes in kinds.values()]
        await _all(parts)
        return outcomes

    async def _insert_and_finish(
        self, batch: list[_Insert | _Finish], inserts: list[int], finishes: list[int]
    ) -> list[int | BaseException]:
        """The inserts and the outcomes of one kind in one statement (one commit);
        their results, the inserts' then the outcomes', in the order given."""
        values = [cast(_Insert, batch[i]).values for i in inserts]
        order, params = _insert_arrays(values)
        ordered = sorted((cast(_Finish, batch[i]) for i in finishes), key=lambda f: f.entry_id)
        params += _finish_params(ordered)
        first = ordered[0]
        sql = _insert_and_finish_entries(first.columns, first.from_states is not None)
        # by id on a keyed connection, whose cached plan keeps the update on the key
        found = await self._journal_fetch("insert_entry", sql, params)
        inserted = [row for row in found if row["ord"] is not None]
        won = {int(row["id"]) for row in found if row["ord"] is None}
        results: list[int | BaseException] = entry_outcomes(order, inserted)
        results += [int(cast(_Finish, batch[i]).entry_id in won) for i in finishes]
        return results

    async def _insert_batch(self, batch: list[list[Any]]) -> list[int | BaseException]:
        """One multi-row INSERT and one commit for ``batch``; a row whose dedupe key
        exists (or repeats in the batch) is not inserted and gets DuplicateTransaction."""
        if len(batch) > 1:
            order, columns = _insert_arrays(batch)
            try:
                found = await self._journal_fetch("insert_entry", _INSERT_ENTRIES, columns)
            except StoreUnavailable:
                raise
            except StoreError:
                pass  # e.g. one value the driver refuses: each row alone, below
            else:
                return entry_outcomes(order, found)
        return await _all([self._insert_one(v) for v in batch])

    async def _hold_batch(
        self, batch: list[tuple[list[Any], BatchHold]]
    ) -> list[int | BaseException]:
        """Pending entries with their risk holds: one transaction (``pg_holds``);
        should it fail other than by a lost connection, each runs alone."""
        pool = self._require_pool("insert_entry", keyed=True)
        order, columns = _insert_arrays([values for values, _ in batch])
        holds = [then for _, then in batch]
        try:
            with _translated("insert_entry"):
                async with pool.acquire() as connection, connection.transaction():
                    return await write_batch(connection, _INSERT_ENTRIES, columns, order, holds)
        except StoreUnavailable:
            for then in holds:
                then.result = None  # nothing of the batch is known to be committed
            raise
        except StoreError:
            pass  # e.g. a deadlock or a value the driver refuses: each alone, below
        return await _all([self._hold_one(v, t) for v, t in batch])

    async def _hold_one(self, values: list[Any], then: BatchHold) -> int | BaseException:
        then.result = None
        try:
            keys, expiries = counter_rows(then.hold)
            await self._counter_write("risk_create", CREATE_COUNTERS, [keys, expiries])
            return await self._insert_then_alone(
                "insert_entry", self._insert_entry, values, cast("EntryThen", then)
            )
        except StoreError as exc:
            return exc

    async def _insert_one(self, values: list[Any]) -> int | BaseException:
        try:
            return await SqlStore._insert_entry_row(self, values)
        except StoreError as exc:
            return exc

    async def _finish_entry_row(
        self,
        entry_id: int,
        from_states: tuple[str, ...],
        columns: tuple[str, ...],
        values: list[Any],
    ) -> bool:
        self._require_pool("finish_entry")
        finish = _Finish(entry_id, from_states, columns, values)
        return bool(await self._journal.submit(finish, ("f", entry_id)))

    async def _update_entry_row(
        self, entry_id: int, columns: tuple[str, ...], values: list[Any]
    ) -> None:
        self._require_pool("update_entry")
        await self._journal.submit(_Finish(entry_id, None, columns, values), ("f", entry_id))

    async def _finish_kind(self, batch: list[_Finish]) -> list[bool | BaseException]:
        """Finishes of distinct entries with the same columns and from-states."""
        if len(batch) > 1:
            ordered = sorted(batch, key=lambda f: f.entry_id)  # rows locked in id order
            first = ordered[0]
            params = _finish_params(ordered)
            sql = _finish_entries(first.columns, first.from_states is not None)
            try:  # by id: on a keyed connection, whose cached plan stays on the key
                found = await self._journal_fetch(first.op, sql, params)
            except StoreUnavailable:
                raise
            except StoreError:
                pass  # each alone, below
            else:
                won = {int(row["id"]) for row in found}
                return [f.entry_id in won for f in batch]
        return await _all([self._finish_one(f) for f in batch])

    async def _finish_one(self, finish: _Finish) -> bool | BaseException:
        try:
            if finish.from_states is None:
                await SqlStore._update_entry_row(
                    self, finish.entry_id, finish.columns, finish.values
                )
                return True
            return await SqlStore._finish_entry_row(
                self, finish.entry_id, finish.from_states, finish.columns, finish.values
            )
        except StoreError as exc:
            return exc

    async def in_doubt_entries(
        self, created_before: dt.datetime, limit: int = 100
    ) -> list[JournalEntry]:
        """Pending entries from journal_open (migration 0037): one sweeper at a time
        first deletes the listed entries no longer pending and vacuums the list, so
        it stays the size of the entries in flight (also without autovacuum)."""
        pool = self._require_pool("in_doubt_entries")
        with _translated("in_doubt_entries"):
            async with pool.acquire() as connection:
                try:  # housekeeping: should it fail, the read below still runs
                    await self._close_listed(connection)
                except (asyncpg.PostgresError, TimeoutError) as exc:
                    _log.warning(
                        "journal_open not emptied (in-doubt entries still read)",
                        error_type=type(exc).__name__,
                    )
                found = await connection.fetch(
                    numbered(q.IN_DOUBT_PG), rows.as_utc(created_before), limit
                )
        return [rows.entry_from_row(r) for r in found]

    async def open_entries(self) -> OpenEntries:
        """journal_open's rows, and those whose entry is pending (one read)."""
        row = await self._read_one("open_entries", q.OPEN_ENTRIES_PG)
        return OpenEntries(int(row["pending"]), int(row["listed"])) if row else OpenEntries(0, 0)

    async def _close_listed(self, connection: asyncpg.Connection) -> None:
        """Delete the listed entries no longer pending and, if any, vacuum the list;
        one sweeper at a time (the others skip it)."""
        async with connection.transaction():
            closed = "DELETE 0"
            if await connection.fetchval(_TRY_LOCK, self._sweep_lock_key):
                closed = await connection.execute(q.CLOSE_OPEN_PG)
        if closed != "DELETE 0":
            await connection.execute(_VACUUM_OPEN)

    async def _insert_then(self, op: str, sql: str, params: Sequence[Any], then: EntryThen) -> int:
        if getattr(then, "batchable", False):  # a risk hold: group-committed (pg_holds)
            self._require_pool(op)
            values = list(params)
            return await self._holds.submit((values, cast("BatchHold", then)), _dedupe_key(values))
        return await self._insert_then_alone(op, sql, params, then)

    async def _insert_then_alone(
        self, op: str, sql: str, params: Sequence[Any], then: EntryThen
    ) -> int:
        pool = self._require_pool(op)
        with _translated(op):
            async with pool.acquire() as connection, connection.transaction():
                entry_id = int((await connection.fetch(numbered(sql), *params))[0]["id"])
                await then.postgres(connection, entry_id)
                return entry_id

    async def next_sequence(self, name: str) -> int:
        sequence = _sequence_name(name)
        pool = self._require_pool("next_sequence")
        with _translated("next_sequence"):
            try:
                return int(await pool.fetchval(_NEXTVAL, sequence))
            except asyncpg.UndefinedTableError:
                pass  # first use: create it, then draw
            try:
                await pool.execute(f'CREATE SEQUENCE IF NOT EXISTS "{sequence}"')
            except (asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
                # Another caller created it at the same moment: IF NOT EXISTS does not
                # cover a concurrent CREATE (either error, depending on the timing).
                pass
            return int(await pool.fetchval(_NEXTVAL, sequence))


def _lost(connection: asyncpg.Connection) -> bool:
    """True when a held connection can run no more statements: closed, or taken
    back by its pool when the driver saw the server end it (the proxy we hold is
    then detached, and asks raise InterfaceError)."""
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:
        return True


async def _all(awaitables: Sequence[Awaitable[A]]) -> list[A]:
    """``asyncio.gather``'s results, but a lone awaitable is awaited in place: no
    task and no extra turn of the event loop for the common one-part batch (a
    lone request's statement, a batch with one kind of write)."""
    if len(awaitables) == 1:
        return [await awaitables[0]]
    return list(await asyncio.gather(*awaitables))


async def _fetch(pool: asyncpg.Pool, op: str, sql: str, params: Sequence[Any]) -> list[Any]:
    """One statement on ``pool`` (autocommit), its rows; errors as the store's."""
    with _translated(op):
        found: list[Any] = await pool.fetch(numbered(sql), *params)
    return found


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """The pool's reset on release, as a no-op.  asyncpg's default runs
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` — a second round
    trip after every statement.  The store leaves nothing to reset: statements
    and transactions that end within the call, advisory locks only
    transaction-scoped (migrations, the sweep's ``_close_listed``), no cursors,
    LISTEN or SET; the search_path is a server setting of every connection."""


def _sequence_name(name: str) -> str:
    """A safe identifier for a sequence name; names outside [a-z0-9_] get a hash suffix."""
    if _SEQUENCE_NAME.match(name):
        return f"posp_seq_{name}"
    cleaned = re.sub(r"[^a-z0-9_]", "_", name.lower())[:40]
    return f"posp_seq_{cleaned}_{zlib.crc32(name.encode()):08x}"


@dataclass(frozen=True, slots=True)
class _Insert:
    """One ``insert_entry`` waiting for its group commit: the row's values in
    ``ENTRY_INSERT_COLUMNS`` order."""

    values: list[Any]


@dataclass(frozen=True, slots=True)
class _Finish:
    """One ``finish_entry`` (or, with ``from_states`` None, ``update_entry``)
    waiting for its group commit."""

    entry_id: int
    from_states: tuple[str, ...] | None
    columns: tuple[str, ...]
    values: list[Any]

    @property
    def op(self) -> str:
        return "update_entry" if self.from_states is None else "finish_entry"


_INSERT_COLUMNS = rows.ENTRY_INSERT_COLUMNS
_DEDUPE_KEY = tuple(
    _INSERT_COLUMNS.index(c) for c in ("terminal_id", "batch", "trace", "direction", "dedupe")
)


def _sort_key(values: list[Any]) -> tuple[str, ...]:
    return tuple(str(values[i]) for i in _DEDUPE_KEY[:4])


def _insert_arrays(rows_values: Sequence[list[Any]]) -> tuple[list[int], list[Any]]:
    """A batch insert's row order (indexes into ``rows_values``, by dedupe key:
    two instances' batches lock keys in one order) and its one array per column."""
    order = sorted(range(len(rows_values)), key=lambda i: _sort_key(rows_values[i]))
    columns = [list(column) for column in zip(*(rows_values[i] for i in order), strict=True)]
    return order, columns


def _dedupe_key(values: list[Any]) -> tuple[Any, ...] | None:
    """Two inserts with the same dedupe key never share a batch (the later one
    meets the earlier's row in the next and gets DuplicateTransaction)."""
    key = tuple(values[i] for i in _DEDUPE_KEY)
    return key[:4] if key[4] else None


#: Journal columns that are not TEXT (the arrays of a batch statement are typed).
_JOURNAL_TYPES = {
    "id": "bigint",
    "amount_minor": "bigint",
    "original_id": "bigint",
    "refunded_minor": "bigint",
    "reserved_minor": "bigint",
    "dedupe": "boolean",
    "created_at": "timestamptz",
}


def _journal_type(column: str) -> str:
    return _JOURNAL_TYPES.get(column, "text")


def _unnest(columns: Sequence[str], first_param: int = 1) -> str:
    arrays = ", ".join(f"${first_param + i}::{_journal_type(c)}[]" for i, c in enumerate(columns))
    return f"unnest({arrays})"


# Ids are drawn first (the identity's sequence) so that each row of the batch —
# inserted or left out as a duplicate — is matched to its caller by its ordinal.
_INSERT_CTES = (
    "input AS MATERIALIZED (SELECT nextval('journal_id_seq') AS id, u.*"
    f" FROM {_unnest(_INSERT_COLUMNS)} WITH ORDINALITY AS u({', '.join(_INSERT_COLUMNS)}, ord)),"
    f" inserted AS (INSERT INTO journal (id, {', '.join(_INSERT_COLUMNS)})"
    f" SELECT id, {', '.join(_INSERT_COLUMNS)} FROM input ORDER BY ord"
    " ON CONFLICT (terminal_id, batch, trace, direction, (CASE WHEN dedupe THEN 0 END)) DO NOTHING"
    " RETURNING id, state, created_at),"
    f" {q.LIST_PENDING_PG}"
)
_INSERTED_ROWS = (
    "SELECT input.ord, input.id, inserted.id IS NOT NULL AS inserted"
    " FROM input LEFT JOIN inserted ON inserted.id = input.id"
)
_INSERT_ENTRIES = f"WITH {_INSERT_CTES} {_INSERTED_ROWS} ORDER BY input.ord"


def _finish_params(ordered: Sequence[_Finish]) -> list[Any]:
    """A finish batch's arrays (ids, one per column) and, for a compare-and-set,
    the from-states; ``ordered`` holds one kind of finish, in id order."""
    params: list[Any] = [[f.entry_id for f in ordered]]
    params += [list(column) for column in zip(*(f.values for f in ordered), strict=True)]
    if ordered[0].from_states is not None:
        params.append(list(ordered[0].from_states))
    return params


def _finish_update(columns: tuple[str, ...], cas: bool, first_param: int = 1) -> str:
    """The UPDATE of many entries' outcomes, its parameters from ``first_param``
    on: the ids, one array per column and, for a compare-and-set (``cas``), the
    from-states."""
    names = ("id", *columns)
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    states = first_param + len(names)
    condition = f" AND j.state = ANY(${states}::text[])" if cas else ""
    return (
        f"UPDATE journal AS j SET {assignments}"
        f" FROM {_unnest(names, first_param)} AS v({', '.join(names)})"
        f" WHERE j.id = v.id{condition} RETURNING j.id"
    )


@functools.lru_cache(maxsize=64)
def _finish_entries(columns: tuple[str, ...], cas: bool) -> str:
    """Many entries' outcomes in one UPDATE (``_finish_update``)."""
    return _finish_update(columns, cas)


@functools.lru_cache(maxsize=64)
def _insert_and_finish_entries(columns: tuple[str, ...], cas: bool) -> str:
    """Pending entries and outcomes of one kind in one statement: the insert
    arrays first (as ``_INSERT_ENTRIES``), then the finish arrays.  Rows: each
    input row with its ordinal, as the insert alone returns them, then each
    finished entry with a NULL ordinal.  The update cannot meet a row the same
    statement inserts: an outcome is queued only after its entry's insert
    returned."""
    update = _finish_update(columns, cas, len(_INSERT_COLUMNS) + 1)
    return (
        f"WITH {_INSERT_CTES}, finished AS ({update})"
        f" {_INSERTED_ROWS}"
        " UNION ALL SELECT NULL, finished.id, true FROM finished ORDER BY 1"
    )


_NEXTVAL = "SELECT nextval($1::text::regclass)"
_TRY_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
#: Vacuumed by the sweeper that emptied it: its rows live seconds, and without
#: VACUUM its pages are not reused.  Only its owner (the role that migrated) may;
#: for another role PostgreSQL skips it with a warning the driver drops, and the
#: table is left to autovacuum.  Never truncated (migration 0037: every journal
#: insert writes it, and truncation takes an exclusive lock).
_VACUUM_OPEN = "VACUUM (SKIP_LOCKED) journal_open"
_APPLIED = "SELECT version FROM schema_migrations"
_RECORD = "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)"
