"""Single-statement writes on the event loop's own thread, when they cannot wait.

Handing a write to the writer thread (``sqlite_worker``) costs two thread
hand-offs, a queue and a ``call_soon_threadsafe`` wake-up: more CPU than the
write itself when the switch is not busy enough to group commits.  A write
that would not wait anyway can run right where it is asked for.

Invariants:
* Nothing here ever waits on SQLite's lock: the connection's busy timeout is 0,
  so ``BEGIN IMMEDIATE`` fails at once when another connection (the writer
  thread, another switch process) holds the write lock; the write then goes to
  the writer thread as before (``try_write`` returns ``BUSY``).  A busy error
  after BEGIN rolls the transaction back before the fallback, so a statement
  is never applied twice.
* Never checkpoints (``wal_autocheckpoint = 0`` on this connection): a
  checkpoint writes the database file and fsyncs it, which belongs in a
  thread.  Every ``checkpoint_every`` commits the caller is told to ask a
  reader thread for a PASSIVE checkpoint.
* Used only from the thread that opened it (the caller checks ``owner``).
* Commit durability is the writer thread's: WAL, ``synchronous = NORMAL``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any, Final

#: ``try_write`` result: the write lock was taken; use the writer thread.
BUSY: Final = None
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6
DEFAULT_CHECKPOINT_EVERY: Final = 200


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED (any extended code)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class InlineWriter:
    """One connection for the loop thread's non-waiting writes; see the module docstring."""

    def __init__(self, path: str, *, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> None:
        connection = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=0.0,
            cached_statements=256,
        )
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA busy_timeout = 0")
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self.owner = threading.get_ident()
        self._checkpoint_every = checkpoint_every
        self._since_checkpoint = 0
        self.writes = 0  # committed here
        self.busy = 0  # sent to the writer thread because the lock was taken

    def try_write(self, sql: str, params: Sequence[Any]) -> list[Any] | None:
        """Run ``sql`` in its own transaction and return its rows, or ``BUSY``.
        Other SQLite errors propagate (after a rollback), as from the writer thread."""
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if is_busy(exc):
                self.busy += 1
                return BUSY
            raise
        try:
            found = connection.execute(sql, params).fetchall()
            connection.execute("COMMIT")
        except BaseException as exc:
            if connection.in_transaction:
                connection.rollback()
            if isinstance(exc, sqlite3.Error) and is_busy(exc):
                self.busy += 1
                return BUSY
            raise
        self.writes += 1
        self._since_checkpoint += 1
        return found

    def checkpoint_due(self) -> bool:
        """True once every ``checkpoint_every`` commits (the caller then asks a
        thread for a PASSIVE checkpoint)."""
        if self._since_checkpoint < self._checkpoint_every:
            return False
        self._since_checkpoint = 0
        return True

    def close(self) -> None:
        self._connection.close()
