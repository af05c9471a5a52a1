"""A thread that owns one sqlite3 connection and runs jobs for the event loop.

Invariants:
* The event loop never waits on SQLite: a job is queued, the thread runs it,
  and the result is handed back with ``call_soon_threadsafe``.
* Group commit: a writing worker takes every job already queued (up to
  ``max_group``) and runs them in ONE transaction, each inside its own
  savepoint, so one failing job (a duplicate) rolls back only itself.  A job
  submitted as ``single_statement`` needs no savepoint: SQLite undoes a failed
  statement by itself (the hot path's inserts and updates are such jobs, and
  every savepoint is two more statements, each a GIL hand-off).  Should a
  failure roll back the whole transaction instead (I/O error, disk full), the
  group fails as a whole, exactly as when COMMIT fails.  A job's
  future resolves only after the COMMIT that made it durable; if the COMMIT
  fails, every job of the group fails.
* Jobs run in submission order; a job submitted after ``stop()`` fails with
  StoreError.
* A writing worker's jobs submitted during one event-loop turn are handed to
  the thread together (one queue put, so one thread wake-up per turn instead
  of one per job); results come back one ``call_soon_threadsafe`` per group.
* With a ``write_lock`` file, a writing worker holds an exclusive ``flock`` on
  it around each transaction: several processes writing one database wait for
  the file lock, polled with pauses of 50 µs doubling to at most 1 ms, instead
  of SQLite's busy handler's sleeps (1, 2, 5, 10 ... 100 ms: idle time while
  the lock is long free).  The wait is bounded (``write_lock_wait_s``, the busy
  timeout): a writer stuck holding the file lock makes the others go on
  without it, where SQLite's own lock and busy timeout decide as before
  (StoreUnavailable).  A writer that does not take the file lock (another
  program) is kept out by SQLite's lock; a process that dies holding the file
  lock loses it with its file.  A failed transaction is rolled back before the
  file lock is let go.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from posp.errors import StoreError

Job = Callable[[sqlite3.Connection], Any]


@dataclass(slots=True)
class _Pending:
    job: Job
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    single_statement: bool = False


_STOP = object()
_LOCK_FIRST_PAUSE_S = 0.00005
_LOCK_MAX_PAUSE_S = 0.001


class SqliteWorker:
    """Runs jobs on one connection in a dedicated thread; see the module docstring."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        name: str,
        writes: bool,
        max_group: int = 512,
        write_lock: str | None = None,
        write_lock_wait_s: float = 10.0,
    ) -> None:
        self._connect = connect
        self._write_lock = write_lock
        self._write_lock_wait_s = write_lock_wait_s
        self._lock_fd: int | None = None
        self._writes = writes
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Pending | list[_Pending] | object] = queue.SimpleQueue()
        self._batch: list[_Pending] = []  # this loop turn's jobs, not yet queued
        self._batch_loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stopped = False
        self.queued = 0  # jobs submitted and not yet answered (read by the event loop only)

    async def start(self) -> None:
        """Open the connection in the worker thread; raises what connecting raised."""
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._startup_error is not None:
            raise self._startup_error

    async def run(self, job: Job, *, single_statement: bool = False) -> Any:
        """Run ``job(connection)`` in the worker; its result or exception comes back here.
        ``single_statement``: the job executes exactly one SQL statement."""
        if self._stopped:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.queued += 1
        pending = _Pending(job, loop, future, single_statement)
        if not self._writes:
            self._queue.put(pending)
        elif self._batch_loop is None:
            self._batch.append(pending)
            self._batch_loop = loop
            loop.call_soon(self._submit_batch)
        elif self._batch_loop is loop:
            self._batch.append(pending)
        else:  # another loop's batch is open: keep order, hand both over now
            self._submit_batch()
            self._queue.put(pending)
        try:
            return await future
        finally:
            self.queued -= 1

    async def stop(self) -> None:
        """Finish the jobs already queued, then close the connection."""
        if self._stopped:
            return
        self._stopped = True
        self._submit_batch()
        self._queue.put(_STOP)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    def _submit_batch(self) -> None:
        """Hand this loop turn's jobs to the thread in one put."""
        batch, self._batch, self._batch_loop = self._batch, [], None
        if batch:
            self._queue.put(batch)

    # --- worker thread -------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self._write_lock is not None:
                self._lock_fd = os.open(self._write_lock, os.O_RDWR | os.O_CREAT, 0o600)
            connection = self._connect()
        except BaseException as exc:  # handed to start() in the loop
            self._close_lock()
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                group, stop = self._take_group()
                if group:
                    self._run_group(connection, group)
                if stop:
                    break
        finally:
            connection.close()
            self._close_lock()

    def _close_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _take_group(self) -> tuple[list[_Pending], bool]:
        """Block for one job, then take what else is already queued."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        group: list[_Pending] = []
        _add(group, first)
        limit = self._max_group if self._writes else 1
        while len(group) < limit:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                return group, True
            _add(group, nxt)
        return group, False

    def _run_group(self, connection: sqlite3.Connection, group: list[_Pending]) -> None:
        if not self._writes:
            self._deliver(group, [self._run_job(connection, p.job) for p in group])
            return
        locked = self._lock_fd is not None and self._take_write_lock()
        try:
            outcomes = self._transaction(connection, group)
        finally:
            if locked:
                assert self._lock_fd is not None
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._deliver(group, outcomes)

    def _take_write_lock(self) -> bool:
        """The file lock, waited for up to ``write_lock_wait_s`` (polled, the pause
        doubling from 50 µs to at most 1 ms); False when it stayed taken — a
        writer stuck holding it — and the transaction then goes on without it,
        kept out by SQLite's own lock and busy timeout as before."""
        assert self._lock_fd is not None
        deadline = time.monotonic() + self._write_lock_wait_s
        pause = _LOCK_FIRST_PAUSE_S
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)  # lets the GIL go
            pause = min(pause * 2, _LOCK_MAX_PAUSE_S)

    def _transaction(
        self, connection: sqlite3.Connection, group: list[_Pending]
    ) -> list[tuple[bool, Any]]:
        """The group in one transaction; if BEGIN or COMMIT fails, rolled back (still
        under the file lock) and failed as a whole."""
        try:
            return self._run_in_transaction(connection, group)
        except BaseException as exc:
            if connection.in_transaction:
                try:
                    connection.rollback()
                except sqlite3.Error:
                    pass
            return [(False, exc)] * len(group)

    def _run_in_transaction(
        self, connection: sqlite3.Connection, group: list[_Pending]
    ) -> list[tuple[bool, Any]]:
        connection.execute("BEGIN IMMEDIATE")
        outcomes: list[tuple[bool, Any]] = []
        for pending in group:
            if pending.single_statement:
                ok, value = self._run_job(connection, pending.job)
                if not ok and not connection.in_transaction:
                    raise value  # SQLite rolled back the whole group (see module docstring)
                outcomes.append((ok, value))
                continue
            connection.execute("SAVEPOINT job")
            ok, value = self._run_job(connection, pending.job)
            if not ok:
                connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
            outcomes.append((ok, value))
        connection.execute("COMMIT")
        return outcomes

    @staticmethod
    def _run_job(connection: sqlite3.Connection, job: Job) -> tuple[bool, Any]:
        try:
            return True, job(connection)
        except Exception as exc:
            return False, exc

    @staticmethod
    def _deliver(group: list[_Pending], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for pending, (ok, value) in zip(group, outcomes, strict=True):
            by_loop.setdefault(pending.loop, []).append((pending.future, ok, value))
        for loop, results in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, results)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


def _add(group: list[_Pending], item: object) -> None:
    """Append a queue item (one job, or one loop turn's batch of jobs) to ``group``."""
    if isinstance(item, list):
        group.extend(item)
    else:
        assert isinstance(item, _Pending)
        group.append(item)


def _resolve(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.done():  # the caller was cancelled; the job ran anyway
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
