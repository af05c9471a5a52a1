"""Batch overview for operators: merge journal aggregates, terminals' open
batches, settlement outcomes and upload counts into one row per
(terminal, batch).

Invariants: every batch that has journal entries, a settlement or uploads is
listed, and so is every terminal's open batch (even when still empty); a batch
is "open" exactly when it is the terminal's current batch; ``balanced`` is
None until the batch has been settled.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_ZERO_AMOUNTS = {
    "txn_count": 0,
    "debit_count": 0,
    "debit_amount_minor": 0,
    "credit_count": 0,
    "credit_amount_minor": 0,
}


def _blank(terminal_id: str, merchant_id: str, batch: str) -> dict[str, object]:
    return {
        "terminal_id": terminal_id,
        "merchant_id": merchant_id,
        "batch": batch,
        "status": "closed",
        **_ZERO_AMOUNTS,
        "settled": False,
        "balanced": None,
        "upload_records": 0,
        "upload_mismatches": 0,
    }


def merge_batches(
    summaries: Iterable[Any],
    open_batches: Iterable[Any],
    settlements: Iterable[Any],
    upload_counts: Iterable[Any],
) -> list[dict[str, object]]:
    """Rows (mappings by column name) from queries.batch_summaries, open_batches,
    settlement_flags and upload_counts -> list_batches dicts, sorted by terminal, batch."""
    merged: dict[tuple[str, str], dict[str, object]] = {}

    def row_for(source: Any) -> dict[str, object]:
        key = (source["terminal_id"], source["batch"])
        if key not in merged:
            # Row types test values with `in`, hence keys().
            has_merchant = "merchant_id" in source.keys()  # noqa: SIM118
            merchant_id = source["merchant_id"] if has_merchant else ""
            merged[key] = _blank(key[0], merchant_id or "", key[1])
        return merged[key]

    for summary in summaries:
        row = row_for(summary)
        row.update({name: int(summary[name] or 0) for name in _ZERO_AMOUNTS})
    for terminal in open_batches:
        row_for(terminal)["status"] = "open"
    for settlement in settlements:
        row = row_for(settlement)
        row["settled"] = True
        row["balanced"] = bool(settlement["domestic_balanced"]) and bool(
            settlement["foreign_balanced"]
        )
    for counts in upload_counts:
        row = row_for(counts)
        row["upload_records"] = int(counts["records"])
        row["upload_mismatches"] = int(counts["mismatches"] or 0)
    return [merged[key] for key in sorted(merged)]
