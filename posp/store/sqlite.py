"""SqliteStore: the embedded default store, one database file.

Invariants:
* WAL journal, ``synchronous=NORMAL`` (a commit survives a process crash; an OS
  crash may lose the last commits, never corrupt the file), foreign keys on.
* All writes go through ONE writer thread that group-commits whatever is
  queued (see ``sqlite_worker``); reads go to two reader threads with their own
  connections, so a long settlement query never stalls journaling; the hot
  path's small reads by primary key (``_point_read``) run on the event loop's
  own connection (no busy timeout: busy goes to a reader).  An
  in-memory database (``:memory:``) has one connection, so it reads and writes
  through the writer.
* Several SqliteStore objects (or processes) may share one file: writers
  serialize on SQLite's lock (``BEGIN IMMEDIATE`` with a busy timeout), so
  sequences and compare-and-set stay exactly-once; posp's writers queue for it
  on a file lock first (``<file>-writer.lock``, see ``sqlite_worker``), polled
  at most 1 ms apart, instead of SQLite's busy-handler sleeps of up to 100 ms.
* Times are stored as fixed-width UTC text, so text order is time order.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posp.errors import DuplicateTransaction, StoreError, StoreUnavailable
from posp.store import rows
from posp.store.api import EntryThen
from posp.store.migrations import CREATE_TABLE_SQL, load_migrations
from posp.store.sql_store import DEFAULT_SAF_LEASE_S, SqlStore
from posp.store.sqlite_worker import SqliteWorker

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
        self._inline: sqlite3.Connection | None = None  # ``_point_read``'s, the loop's own
        self._inline_thread: int | None = None  # the thread (event loop) it belongs to

    # --- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        """Create the file (and its folder), apply migrations, start the threads."""
        if self._writer is not None:
            return
        if self.path != MEMORY:
            _create_private(Path(self.path))
        writer = SqliteWorker(
            lambda: self._connect(writer=True),
            name="posp-sqlite-writer",
            writes=True,
            max_group=self._max_group,
            write_lock=None if self.path == MEMORY else f"{self.path}-writer.lock",
            write_lock_wait_s=_BUSY_TIMEOUT_MS / 1000,
        )
        try:
            await writer.start()
        except sqlite3.Error as exc:
            raise _translate(f"open {self.path}", exc) from exc
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
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Drain queued jobs and close every connection; safe to call twice."""
        workers = [*self._readers, *([self._writer] if self._writer else [])]
        self._readers = []
        if self._inline is not None:
            self._inline.close()
            self._inline = self._inline_thread = None
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
        # A statement journal (a multi-row statement inside a savepoint) in memory,
        # not a temporary file created and unlinked each time.
        connection.execute("PRAGMA temp_store = MEMORY")
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

    async def _point_read(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read by primary key, run right here on the event loop's own
        connection: it costs SQLite some 50 µs, less than handing it to a reader
        thread and back (two thread wake-ups and the GIL going back and forth).
        WAL readers do not wait for writers, and this connection has no busy
        timeout, so a database that answers busy (recovery) sends the read to a
        reader thread instead; what remains on the loop is SQLite's own short
        retries when a read starts as the WAL is reset, and the page reads of a
        table the page cache does not hold (the counters are small and hot)."""
        if not self._readers or (self._inline_thread not in (None, threading.get_ident())):
            # in memory (the writer's connection is the database), or called from
            # another thread's event loop than the one the connection belongs to
            return await self._read(op, sql, params)
        connection = self._inline or self._open_inline()
        try:
            return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                return await self._read(op, sql, params)
            raise _translate(op, exc) from exc
        except sqlite3.Error as exc:
            raise _translate(op, exc) from exc
        except (OverflowError, TypeError, ValueError) as exc:
            raise StoreError(f"{op}: invalid value ({type(exc).__name__})") from exc

    async def _key_rows(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._point_read(op, sql, params)

    def _open_inline(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except sqlite3.Error as exc:
            raise _translate("open the inline reader", exc) from exc
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA busy_timeout = 0")
            connection.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            connection.close()
            raise _translate("open the inline reader", exc) from exc
        self._inline, self._inline_thread = connection, threading.get_ident()
        return connection

    async def _write(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        def job(connection: sqlite3.Connection) -> list[Any]:
            return connection.execute(sql, params).fetchall()

        result: list[Any] = await self._write_job(op, job, single_statement=True)
        return result

    async def _cas_then(
        self,
        op: str,
        cas: tuple[str, Sequence[Any]],
        then: tuple[str, Sequence[Any]],
        *,
        then_required: bool = False,
    ) -> bool:
        def job(connection: sqlite3.Connection) -> bool:
            # One job = one savepoint in the writer's transaction: both or neither.
            if not connection.execute(*cas).fetchall():
                return False
            if not connection.execute(*then).fetchall() and then_required:
                raise StoreError(f"{op}: its second statement changed nothing")
            return True

        won: bool = await self._write_job(op, job)
        return won

    async def _insert_then(self, op: str, sql: str, params: Sequence[Any], then: EntryThen) -> int:
        def job(connection: sqlite3.Connection) -> int:
            # One job = one savepoint in the writer's transaction: both or neither.
            entry_id = int(connection.execute(sql, params).fetchall()[0]["id"])
            then.sqlite(connection, entry_id)
            return entry_id

        entry_id: int = await self._write_job(op, job)
        return entry_id

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


#: The database and its -wal/-shm files hold masked PANs, PAN hashes and 0420s:
#: owner only, whatever the umask (SQLite gives -wal/-shm the database's mode).
FILE_MODE = 0o600
DIR_MODE = 0o700


def _create_private(path: Path) -> None:
    """Create the database's folders (0700) and file (0600) whatever the umask, and
    take group/other access away from an existing file and its -wal/-shm."""
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in missing:
            os.chmod(folder, DIR_MODE)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
        for name in (path, *(Path(f"{path}-{end}") for end in ("wal", "shm", "writer.lock"))):
            if name.exists() and name.stat().st_mode & 0o077:
                os.chmod(name, FILE_MODE)
    except OSError as exc:
        raise StoreError(f"cannot create the database {path}: {exc.strerror}") from exc


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
