"""Sample registry rows and journal entries shared by the store contract tests."""

from __future__ import annotations

import dataclasses
import datetime as dt

from posp.risk.counters import CounterAdd
from posp.store.api import JournalEntry, Merchant, Store, Terminal
from posp.store.risk_records import HoldWithEntry

UTC = dt.UTC
MID = "898100000000001"
TID = "10000001"


def entry(trace: str, **changes: object) -> JournalEntry:
    base = JournalEntry(
        terminal_id=TID,
        merchant_id=MID,
        batch="000001",
        trace=trace,
        txn_type="purchase",
        mti="0200",
        processing_code="000000",
        amount_minor=1000,
        pan_masked="622588******0001",
        pan_hash="h1",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def registered(store: Store) -> Store:
    await store.add_merchant(Merchant(MID, "Demo shop", "5411"))
    await store.add_terminal(Terminal(TID, MID))
    return store


def hold_with_entry(adds: tuple[CounterAdd, ...]) -> HoldWithEntry:
    """A risk hold to run with a pending entry (a passing decision, no flags)."""
    fields: dict[str, object] = {
        "rrn": "000000000001",
        "terminal_id": TID,
        "local_day": dt.date(2026, 12, 3),
        "ruleset_version": "v1",
        "outcome": "pass",
        "flagged": False,
        "decisions": [],
    }
    return HoldWithEntry(adds, fields)
