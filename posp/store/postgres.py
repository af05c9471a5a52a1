"""PostgresStore: the store on PostgreSQL through an asyncpg pool, for running
several switch instances on one database.

Invariants:
* Every operation is one SQL statement in autocommit, so exactly-once state
  changes rely on PostgreSQL row locks: ``UPDATE ... WHERE state IN (...)
  RETURNING`` re-checks the condition after waiting for a concurrent writer.
* A partial unique index on (terminal_id, batch, trace, direction) WHERE
  dedupe makes a second instance's insert of the same request fail with
  ``DuplicateTransaction``.
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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from posp.errors import ConfigError, DuplicateTransaction, StoreError, StoreUnavailable
from posp.store import rows
from posp.store.api import EntryThen
from posp.store.migrations import CREATE_TABLE_SQL, load_migrations
from posp.store.queries import numbered
from posp.store.sql_store import DEFAULT_SAF_LEASE_S, SqlStore

DEFAULT_POOL_SIZE = 10
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SEQUENCE_NAME = re.compile(r"^[a-z0-9_]{1,50}$")
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
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
    ) -> None:
        super().__init__(node_id=node_id, saf_lease_s=saf_lease_s)
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ConfigError("store schema must be lower-case letters, digits and _")
        if pool_size < 1:
            raise ConfigError("store pool_size must be at least 1")
        self.dsn = dsn
        self.schema = schema
        self.pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def from_url(cls, url: str, *, node_id: str = "") -> PostgresStore:
        """Take ``pool_size`` and ``schema`` out of the URL's query string."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        pool_text = query.pop("pool_size", str(DEFAULT_POOL_SIZE))
        schema = query.pop("schema", None)
        if not pool_text.isdigit():
            raise ConfigError("store url: pool_size must be a positive integer")
        dsn = urlunsplit(parts._replace(query=urlencode(query)))
        return cls(dsn, node_id=node_id, pool_size=int(pool_text), schema=schema)

    # --- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        """Connect the pool and apply migrations."""
        if self._pool is not None:
            return
        settings = {"search_path": self.schema} if self.schema else None
        with _translated(f"open {_server_of(self.dsn)}"):
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self._connect_timeout_s,
                command_timeout=self._command_timeout_s,
                server_settings=settings,
                reset=_keep_session,
            )
        self._pool = pool
        try:
            with _translated("migrate"):
                await self._migrate(pool)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=self._command_timeout_s)
            except TimeoutError:
                pool.terminate()

    async def _migrate(self, pool: asyncpg.Pool) -> None:
        """Apply missing migrations under an advisory lock keyed by the schema, so
        concurrent starts serialize and the second finds the work done."""
        lock_key = zlib.crc32(f"posp.store.migrate:{self.schema or ''}".encode())
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
            if self.schema:
                await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await connection.execute(CREATE_TABLE_SQL)
            applied = {r["version"] for r in await connection.fetch(_APPLIED)}
            for migration in load_migrations("postgres"):
                if migration.version in applied:
                    continue
                await connection.execute(migration.sql)
                await connection.execute(
                    _RECORD, migration.version, migration.name, rows.now_utc().isoformat()
                )

    # --- primitives --------------------------------------------------------------------
    def _time(self, value: dt.datetime) -> dt.datetime:
        return rows.as_utc(value)

    @property
    def _skip_locked(self) -> bool:
        return True

    def _require_pool(self, op: str) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError(f"{op}: the store is not open")
        return self._pool

    async def _read(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        pool = self._require_pool(op)
        with _translated(op):
            found: list[Any] = await pool.fetch(numbered(sql), *params)
        return found

    async def _write(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._read(op, sql, params)  # autocommit: returns after COMMIT

    async def _cas_then(
        self, op: str, cas: tuple[str, Sequence[Any]], then: tuple[str, Sequence[Any]]
    ) -> bool:
        pool = self._require_pool(op)
        with _translated(op):
            async with pool.acquire() as connection, connection.transaction():
                if not await connection.fetch(numbered(cas[0]), *cas[1]):
                    return False
                await connection.fetch(numbered(then[0]), *then[1])
                return True

    async def _insert_then(self, op: str, sql: str, params: Sequence[Any], then: EntryThen) -> int:
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
            except asyncpg.UniqueViolationError:
                pass  # another instance created it at the same moment
            return int(await pool.fetchval(_NEXTVAL, sequence))


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """The pool's reset on release, as a no-op.  asyncpg's default runs
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` — a second round
    trip after every statement.  The store leaves nothing to reset: one statement
    per call, advisory locks only transaction-scoped (migrations), no cursors,
    LISTEN or SET; the search_path is a server setting of every connection."""


def _sequence_name(name: str) -> str:
    """A safe identifier for a sequence name; names outside [a-z0-9_] get a hash suffix."""
    if _SEQUENCE_NAME.match(name):
        return f"posp_seq_{name}"
    cleaned = re.sub(r"[^a-z0-9_]", "_", name.lower())[:40]
    return f"posp_seq_{cleaned}_{zlib.crc32(name.encode()):08x}"


_NEXTVAL = "SELECT nextval($1::text::regclass)"
_APPLIED = "SELECT version FROM schema_migrations"
_RECORD = "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)"
