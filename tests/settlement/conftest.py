"""Fixtures for settlement tests: a fresh SQLite store with one merchant and
one terminal, and a helper that journals transactions through the store API."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posp.store import open_store
from posp.store.api import APPROVED, JournalEntry, Merchant, Store, Terminal

MERCHANT = "898100000000001"
TERMINAL = "10000001"
BATCH = "000001"
DOMESTIC_PAN = "6225880000000000010"
FOREIGN_PAN = "4761340000000019"


def pan_hash(pan: str) -> str:
    """Stands in for the switch's keyed PAN hash in unit tests."""
    return hashlib.sha256(b"test:" + pan.encode()).hexdigest()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'posp.db'}")
    await s.open()
    await s.add_merchant(Merchant(MERCHANT, "Test shop", "5411"))
    await s.add_terminal(Terminal(TERMINAL, MERCHANT))
    try:
        yield s
    finally:
        await s.close()


class Journal:
    """Seeds journal entries the way the financial steps leave them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._trace = 0

    async def add(
        self,
        txn_type: str,
        amount_minor: int,
        *,
        pan: str = DOMESTIC_PAN,
        state: str = APPROVED,
        batch: str = BATCH,
        direction: str = "original",
        trace: str | None = None,
    ) -> JournalEntry:
        if trace is None:
            self._trace += 1
            trace = f"{self._trace:06d}"
        entry = JournalEntry(
            terminal_id=TERMINAL,
            merchant_id=MERCHANT,
            batch=batch,
            trace=trace,
            txn_type=txn_type,
            mti="0220" if txn_type == "refund" else "0200",
            direction=direction,
            amount_minor=amount_minor,
            pan_masked=pan[:6] + "******" + pan[-4:],
            pan_hash=pan_hash(pan),
            card_class="00" if pan.startswith("62") else "01",
            state=state,
        )
        entry.id = await self.store.insert_entry(entry)
        return entry


@pytest.fixture
def journal(store: Store) -> Journal:
    return Journal(store)
