"""Write-behind persistence of the issuer ledger in SQLite (stdlib ``sqlite3``).

The ledger is the source of truth in memory; :class:`CardDb` loads it at start and
saves the accounts and transactions marked dirty every ``flush_interval_s`` and at
shutdown, in a worker thread so the event loop never blocks.

Durability: a crash loses at most the last flush interval of changes (balances,
holds, transaction states).  That is acceptable for a simulator and keeps the hot
path free of database round trips.  PINs are never stored, only PVVs.

Without a file (``CardDb("")``, ``serve`` without ``--db``) there is nothing to
keep: no database is opened, loading finds nothing and a flush only clears the
dirty marks (no copy of the ledger in an in-memory SQLite, no worker thread).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable

from issuer_sim.ledger import Account, Ledger, Txn

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


def _account_row(a: Account) -> tuple[object, ...]:
    return (
        a.pan, a.expiry, a.status, a.pvv, a.balance_minor, a.daily_limit_minor, a.card_org,
        a.held_minor, a.spent_today_minor, a.spent_day, a.pin_failures,
    )  # fmt: skip


def _txn_row(t: Txn) -> tuple[object, ...]:
    return (t.key, t.kind, t.pan, t.amount_minor, t.state, t.auth_code, t.original_key)


class CardDb:
    """One SQLite file (``":memory:"`` for tests, ``""`` for none: see the module
    docstring); calls are serialised by a lock."""

    def __init__(self, path: str) -> None:
        self._conn: sqlite3.Connection | None = None
        if path:
            self._conn = sqlite3.connect(path, check_same_thread=False)
            self._conn.executescript(_SCHEMA)
        self._lock = asyncio.Lock()

    def _load(self, conn: sqlite3.Connection, ledger: Ledger) -> None:
        for row in conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts"):
            ledger.accounts[row[0]] = Account(*row)
        for row in conn.execute(f"SELECT {_TXN_COLUMNS} FROM txns"):
            ledger.txns[row[0]] = Txn(*row)

    async def load(self, ledger: Ledger) -> None:
        """Fill ``ledger`` from the file (accounts and transactions)."""
        if self._conn is None:
            return
        async with self._lock:
            await asyncio.to_thread(self._load, self._conn, ledger)

    def _save(
        self,
        conn: sqlite3.Connection,
        accounts: list[tuple[object, ...]],
        txns: list[tuple[object, ...]],
    ) -> None:
        with conn:
            conn.executemany(
                f"INSERT OR REPLACE INTO accounts ({_ACCOUNT_COLUMNS})"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                accounts,
            )
            conn.executemany(
                f"INSERT OR REPLACE INTO txns ({_TXN_COLUMNS}) VALUES (?,?,?,?,?,?,?)", txns
            )

    async def save(self, accounts: Iterable[Account], txns: Iterable[Txn]) -> None:
        if self._conn is None:
            return
        # Rows are snapshotted on the loop thread, so later changes cannot tear them.
        account_rows = [_account_row(a) for a in accounts]
        txn_rows = [_txn_row(t) for t in txns]
        if not account_rows and not txn_rows:
            return
        async with self._lock:
            await asyncio.to_thread(self._save, self._conn, account_rows, txn_rows)

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
        if self._conn is None:
            return
        async with self._lock:
            self._conn.close()
