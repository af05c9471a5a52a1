"""SqliteStore: the embedded default store, one database file.

Invariants:
* WAL journal, ``synchronous=NORMAL`` (a commit survives a process crash; an OS
  crash may lose the last commits, never corrupt the file), foreign keys on.
* Writes go through ONE writer thread that group-commits whatever is queued
  (see ``sqlite_worker``), except a write asked for while nothing is queued
  there and SQLite's write lock is free at that instant: it runs at once on the
  event loop's thread (``sqlite_inline``: busy timeout 0, so it never waits; a
  taken lock sends it to the thread; checkpoints run in a reader thread).  Under
  load the thread takes over and commits in groups; when the switch is not that
  busy a write costs no thread hand-offs.  Reads go to two reader threads with
  their own connections, so a long settlement query never stalls journaling.
  An in-memory database (``:memory:``) has one connection, so it reads and
  writes through the writer.
* Several SqliteStore objects (or processes) may share one file: writers
  serialize on SQLite's lock (``BEGIN IMMEDIATE`` with a busy timeout), so
  sequences and compare-and-set stay exactly-once.
* Times are stored as fixed-width UTC text, so text order is time order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posp.errors import DuplicateTransaction, StoreError, StoreUnavailable
from posp.log import get_logger
from posp.store import rows
from posp.store.migrations import CREATE_TABLE_SQL, load_migrations
from posp.store.sql_store import DEFAULT_SAF_LEASE_S, SqlStore
from posp.store.sqlite_inline import InlineWriter
from posp.store.sqlite_worker import SqliteWorker

_log = get_logger("posp.store.sqlite")

MEMORY = ":memory:"
_BUSY_TIMEOUT_MS = 10_000
_READERS = 2
_WAL_ATTEMPTS = 250  # x 20 ms


def _translate(op: str, exc: sqlite3.Error) -> StoreError:
    """A driver error as the store's exception (the driver's text is not passed on)."""
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return DuplicateTransaction(f"{op}: unique constraint violated")
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreError(f"{op}: integrity constraint violated")
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and (
        "locked" in text or "unable to open" in text or "disk i/o" in text or "busy" in text
    ):
        return StoreUnavailable(f"{op}: database unavailable ({type(exc).__name__})")
    return StoreError(f"{op}: database error ({type(exc).__name__})")


class SqliteStore(SqlStore):
    """The store on one SQLite file (``path``), or in memory with ``":memory:"``."""

    def __init__(
        self,
        path: str | Path,
        *,
        node_id: str = "",
        saf_lease_s: float = DEFAULT_SAF_LEASE_S,
        max_group: int = 512,
    ) -> None:
        super().__init__(node_id=node_id, saf_lease_s=saf_lease_s)
        self.path = str(path)
        self._max_group = max_group
        self._writer: SqliteWorker | None = None
        self._readers: list[SqliteWorker] = []
        self._inline: InlineWriter | None = None
        self._checkpoints: set[asyncio.Future[Any]] = set()

    # --- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        """Create the file (and its folder), apply migrations, start the threads."""
        if self._writer is not None:
            return
        if self.path != MEMORY:
            folder = Path(self.path).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the data directory {folder}") from exc
        writer = SqliteWorker(
            lambda: self._connect(writer=True),
            name="posp-sqlite-writer",
            writes=True,
            max_group=self._max_group,
        )
        try:
            await writer.start()
        except sqlite3.Error as exc:
            raise _translate("open", exc) from exc
        self._writer = writer
        try:
            await self._write_job("migrate", _migrate)
            if self.path != MEMORY:
                for number in range(_READERS):
                    reader = SqliteWorker(
                        lambda: self._connect(writer=False),
                        name=f"posp-sqlite-reader-{number}",
                        writes=False,
                    )
                    await reader.start()
                    self._readers.append(reader)
                self._inline = InlineWriter(self.path)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Drain queued jobs and close every connection; safe to call twice."""
        workers = [*self._readers, *([self._writer] if self._writer else [])]
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()
        self._readers = []
        self._writer = None
        for worker in workers:
            await worker.stop()

    def _connect(self, *, writer: bool) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE in the writer)
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            cached_statements=256,
        )
        connection.row_factory = sqlite3.Row
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA foreign_keys = ON")
        if writer and self.path != MEMORY:
            _enable_wal(connection)
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    # --- primitives --------------------------------------------------------------------
    def _time(self, value: dt.datetime) -> str:
        """Fixed-width UTC text (what strftime("%Y-%m-%d %H:%M:%S.%f") gives, ~4x cheaper)."""
        v = value if value.tzinfo is dt.UTC else rows.as_utc(value)
        return (
            f"{v.year:04d}-{v.month:02d}-{v.day:02d}"
            f" {v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
        )

    @property
    def _skip_locked(self) -> bool:
        return False  # the writer's exclusive lock already serializes due_saf

    async def _read(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if not self._readers:  # in memory: one connection does everything
            return await self._write(op, sql, params)

        def job(connection: sqlite3.Connection) -> list[Any]:
            return connection.execute(sql, params).fetchall()

        reader = min(self._readers, key=lambda worker: worker.queued)
        try:
            result: list[Any] = await reader.run(job)
        except sqlite3.Error as exc:
            raise _translate(op, exc) from exc
        except (OverflowError, TypeError, ValueError) as exc:
            raise StoreError(f"{op}: invalid value ({type(exc).__name__})") from exc
        return result

    async def _write(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        inline, writer = self._inline, self._writer
        if (
            inline is not None
            and writer is not None
            and writer.queued == 0  # keeps submission order with the thread's jobs
            and inline.owner == threading.get_ident()
        ):
            try:
                found = inline.try_write(sql, params)
            except sqlite3.Error as exc:
                raise _translate(op, exc) from exc
            except (OverflowError, TypeError, ValueError) as exc:
                raise StoreError(f"{op}: invalid value ({type(exc).__name__})") from exc
            if found is not None:
                if inline.checkpoint_due():
                    self._checkpoint_in_thread()
                return found

        def job(connection: sqlite3.Connection) -> list[Any]:
            return connection.execute(sql, params).fetchall()

        result: list[Any] = await self._write_job(op, job, single_statement=True)
        return result

    def _checkpoint_in_thread(self) -> None:
        """Ask a reader thread (its connection runs no transaction around jobs, as a
        checkpoint needs) for a PASSIVE checkpoint of what the loop thread wrote:
        the WAL is copied into the file and fsynced there, never here."""
        reader = min(self._readers, key=lambda worker: worker.queued)
        done = asyncio.ensure_future(reader.run(_passive_checkpoint))
        self._checkpoints.add(done)
        done.add_done_callback(self._checkpoint_done)

    def _checkpoint_done(self, done: asyncio.Future[Any]) -> None:
        self._checkpoints.discard(done)
        if not done.cancelled() and (exc := done.exception()) is not None:
            # The next one retries; a lasting I/O fault also fails the next write.
            _log.warning("WAL checkpoint failed", error=type(exc).__name__)

    async def _write_job(self, op: str, job: Any, *, single_statement: bool = False) -> Any:
        if self._writer is None:
            raise StoreError(f"{op}: the store is not open")
        try:
            result = await self._writer.run(job, single_statement=single_statement)
        except sqlite3.Error as exc:
            raise _translate(op, exc) from exc
        except (OverflowError, TypeError, ValueError) as exc:  # a value SQLite cannot bind
            raise StoreError(f"{op}: invalid value ({type(exc).__name__})") from exc
        return result


def _passive_checkpoint(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _enable_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL.  The switch needs an exclusive lock and SQLite does
    not apply the busy timeout to it, so a second process opening a fresh file
    at the same moment retries here (in the worker thread, not the loop)."""
    for _ in range(_WAL_ATTEMPTS):
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower():
                raise
            time.sleep(0.02)
            continue
        if str(mode).lower() == "wal":
            return
    raise sqlite3.OperationalError("database is locked: could not enable WAL")


def _migrate(connection: sqlite3.Connection) -> list[int]:
    """Apply the migrations not yet recorded (runs inside the writer's transaction,
    so a second process opening the same file waits and then finds them applied)."""
    connection.execute(CREATE_TABLE_SQL)
    applied = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
    done: list[int] = []
    for migration in load_migrations("sqlite"):
        if migration.version in applied:
            continue
        for statement in migration.statements():
            connection.execute(statement)
        connection.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, rows.now_utc().isoformat()),
        )
        done.append(migration.version)
    return done
