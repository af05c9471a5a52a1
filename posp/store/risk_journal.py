"""The journal read as backtest rows (``posp risk backtest`` without ``--rows``).

Invariants:
* Read-only, in pages of ``page_size`` by journal id (keyset), so a month of
  journal never sits in memory at once; rows come oldest first.
* Only original financial requests with a card hash are replayed; the card
  is its keyed hash and the BIN its masked PAN's first six digits.
* The local time is ``created_at`` (UTC) shifted by ``utc_offset_hours`` (the
  switch's business clock, network.tz_offset_hours).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from posp.risk.backtest import BacktestRow
from posp.risk.inputs import RiskInput
from posp.store import rows
from posp.store.sql_store import SqlStore

JOURNAL_PAGE = (
    "SELECT j.id, j.txn_type, j.amount_minor, j.pan_hash, j.pan_masked, j.terminal_id,"
    " j.merchant_id, j.state, j.created_at, m.category_code"
    " FROM journal j LEFT JOIN merchants m ON m.merchant_id = j.merchant_id"
    " WHERE j.direction = 'original' AND j.pan_hash IS NOT NULL AND j.amount_minor IS NOT NULL"
    " AND j.created_at >= ? AND j.created_at < ? AND j.id > ?"
    " ORDER BY j.id LIMIT ?"
)
#: States in which the journal's request counted as approved at the time.
COUNTED_STATES = frozenset({"approved", "voided", "reversed", "completed"})


async def journal_rows(
    store: SqlStore,
    start: dt.date,
    end: dt.date,
    *,
    utc_offset_hours: float = 0.0,
    page_size: int = 5000,
) -> AsyncIterator[BacktestRow]:
    """Rows of the local business days ``start`` to ``end`` inclusive."""
    offset = dt.timedelta(hours=utc_offset_hours)
    local = dt.timezone(offset)
    since = dt.datetime.combine(start, dt.time(), local).astimezone(dt.UTC)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), local).astimezone(dt.UTC)
    last_id = 0
    while True:
        params = [store._time(since), store._time(until), last_id, page_size]
        page = await store._read("risk_journal_rows", JOURNAL_PAGE, params)
        for row in page:
            yield _row(row, offset)
        if len(page) < page_size:
            return
        last_id = int(page[-1]["id"])


def _row(row: Any, offset: dt.timedelta) -> BacktestRow:
    created = rows.read_time(row["created_at"]) or rows.now_utc()
    local_time = (created + offset).replace(tzinfo=None)
    masked = str(row["pan_masked"] or "")
    inp = RiskInput(
        txn_type=str(row["txn_type"]),
        amount_minor=int(row["amount_minor"]),
        card_hash=str(row["pan_hash"]),
        bin=masked[:6] if masked[:6].isdigit() else "",
        terminal_id=str(row["terminal_id"]),
        merchant_id=str(row["merchant_id"]),
        mcc=str(row["category_code"] or ""),
        local_time=local_time,
    )
    return BacktestRow(inp, str(row["state"]) in COUNTED_STATES)
