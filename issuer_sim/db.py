"""Write-behind persistence of the issuer ledger in SQLite (stdlib ``sqlite3``).

The ledger is the source of truth in memory; :class:`CardDb` loads it at start and
saves the accounts and transactions marked dirty every ``flush_interval_s`` and at
shutdown, in a worker thread so the event loop never blocks.

Durability: by default a crash loses at most the last flush interval of changes
(balances, holds, transaction states), which keeps the hot path free of database
round trips.  In durable mode (``durable = true``, ``serve --durable``) the server
awaits :meth:`CardDb.flush` before every answer leaves, so an answer is never sent
for a change that is not committed.  PINs are never stored, only PVVs.

Invariants (shutdown safe under cancellation):
* The connection is used by ONE worker thread only (a single-thread executor), and
  every job, ``close`` included, runs there in submission order.  A caller cancelled
  while its save runs does not stop the save; ``close`` is queued behind it, so the
  connection is never closed under a running statement.
* A flush returns only after every write submitted before it has committed, even
  when it has nothing of its own to write (another flush may have taken its rows).

Without a file (``CardDb("")``, ``serve`` without ``--db``) there is nothing to
keep: no database is opened, loading finds nothing and a flush only clears the
dirty marks (no copy of the ledger in an in-memory SQLite, no worker thread).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from issuer_sim.ledger import Account, Ledger, Txn
from posp.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    pan TEXT PRIMARY KEY, expiry TEXT NOT NULL, status TEXT NOT NULL, pvv TEXT NOT NULL,
    balance_minor INTEGER NOT NULL, daily_limit_minor INTEGER NOT NULL, card_org TEXT NOT NULL,
    held_minor INTEGER NOT NULL, spent_today_minor INTEGER NOT NULL, spent_day TEXT NOT NULL,
    pin_failures INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS txns (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, pan TEXT NOT NULL, amount_minor INTEGER NOT NULL,
    state TEXT NOT NULL, auth_code TEXT NOT NULL, original_key TEXT);
"""
_ACCOUNT_COLUMNS = (
    "pan, expiry, status, pvv, balance_minor, daily_limit_minor, card_org, held_minor,"
    " spent_today_minor, spent_day, pin_failures"
)
_TXN_COLUMNS = "key, kind, pan, amount_minor, state, auth_code, original_key"
_T = TypeVar("_T")


def _account_row(a: Account) -> tuple[object, ...]:
    return (
        a.pan, a.expiry, a.status, a.pvv, a.balance_minor, a.daily_limit_minor, a.card_org,
        a.held_minor, a.spent_today_minor, a.spent_day, a.pin_failures,
    )  # fmt: skip


def _txn_row(t: Txn) -> tuple[object, ...]:
    return (t.key, t.kind, t.pan, t.amount_minor, t.state, t.auth_code, t.original_key)


class CardDb:
    """One SQLite file (``":memory:"`` for tests, ``""`` for none: see the module
    docstring); every call runs on the one worker thread, in order."""

    def __init__(self, path: str) -> None:
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        if path:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="issuer-db")
            try:
                self._conn = self._executor.submit(_connect, path).result()
            except sqlite3.Error as exc:
                self._executor.shutdown()
                raise ConfigError(f"cannot open the database file {path} (--db): {exc}") from None

    async def _run(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        """``job(connection)`` on the worker thread.  Shielded: a cancelled caller leaves
        the job to run (its rows were taken off the dirty marks, so dropping it would
        lose them) and later jobs (``close``) wait for it."""
        assert self._executor is not None and self._conn is not None
        conn = self._conn
        job_done = asyncio.get_running_loop().run_in_executor(self._executor, job, conn)
        return await asyncio.shield(job_done)

    async def load(self, ledger: Ledger) -> None:
        """Fill ``ledger`` from the file (accounts and transactions)."""
        if self._conn is None:
            return
        accounts, txns = await self._run(_read_all)
        for row in accounts:
            ledger.accounts[row[0]] = Account(*row)
        for row in txns:
            ledger.txns[row[0]] = Txn(*row)

    async def save(self, accounts: Iterable[Account], txns: Iterable[Txn]) -> None:
        """Commit these rows; returns after everything submitted before is committed."""
        if self._conn is None:
            return
        # Rows are snapshotted on the loop thread, so later changes cannot tear them.
        account_rows = [_account_row(a) for a in accounts]
        txn_rows = [_txn_row(t) for t in txns]
        await self._run(lambda conn: _write(conn, account_rows, txn_rows))

    async def flush(self, ledger: Ledger) -> None:
        """Save what the ledger marked dirty since the last flush."""
        if self._conn is None:
            ledger.dirty_accounts.clear()
            ledger.dirty_txns.clear()
            return
        accounts = [ledger.accounts[p] for p in ledger.dirty_accounts if p in ledger.accounts]
        txns = [ledger.txns[k] for k in ledger.dirty_txns if k in ledger.txns]
        ledger.dirty_accounts.clear()
        ledger.dirty_txns.clear()
        await self.save(accounts, txns)

    async def close(self) -> None:
        """Close the file after the writes already submitted (safe after a cancelled
        save: see the module docstring).  Idempotent."""
        executor, self._executor = self._executor, None
        conn, self._conn = self._conn, None
        if executor is None or conn is None:
            return
        closing = executor.submit(conn.close)
        executor.shutdown(wait=False)
        await asyncio.wrap_future(closing)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.executescript(_SCHEMA)
    return conn


def _read_all(conn: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
    accounts = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts").fetchall()
    return accounts, conn.execute(f"SELECT {_TXN_COLUMNS} FROM txns").fetchall()


def _write(
    conn: sqlite3.Connection, accounts: list[tuple[object, ...]], txns: list[tuple[object, ...]]
) -> None:
    if not accounts and not txns:
        return  # a barrier: the executor ran every earlier write first
    with conn:
        conn.executemany(
            f"INSERT OR REPLACE INTO accounts ({_ACCOUNT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            accounts,
        )
        conn.executemany(
            f"INSERT OR REPLACE INTO txns ({_TXN_COLUMNS}) VALUES (?,?,?,?,?,?,?)", txns
        )
