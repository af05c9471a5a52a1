"""``posp batch …`` and ``posp settlement report``: operator views of a journal
seeded through the store and settled through posp.pipeline.settlement."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from pathlib import Path

import pytest

from posp.iso8583.fields import SettlementF48, SettlementTotalsF48, UploadRecord
from posp.pipeline.settlement import end_upload, settle, upload
from posp.store import open_store
from posp.store.api import APPROVED, BatchTotals, JournalEntry, Settlement

from .conftest import MERCHANT, Posp

PAN = "6225880000000000010"


def business_date() -> str:
    """Today at the switch's default offset (UTC+8): the day a settlement now falls on."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)).date().isoformat()


async def seed(posp: Posp) -> None:
    """Terminal 10000001: two purchases, settled unbalanced (the terminal reports one),
    one upload record that matches and one that does not; batch closed."""
    store = open_store(f"sqlite:///{posp.data_dir / 'posp.db'}")
    await store.open()
    try:
        for trace, amount in (("000001", 1000), ("000002", 2500)):
            await store.insert_entry(
                JournalEntry(
                    "10000001",
                    MERCHANT,
                    "000001",
                    trace,
                    "purchase",
                    "0200",
                    amount_minor=amount,
                    pan_hash="h:" + PAN,
                    state=APPROVED,
                )
            )
        zero = SettlementTotalsF48(0, 0, 0, 0)
        reported = SettlementF48(SettlementTotalsF48(1000, 1, 0, 0), zero)
        await settle(store, "10000001", MERCHANT, "000001", reported)
        records = [UploadRecord("00", "000001", PAN, 1000), UploadRecord("00", "000003", PAN, 5)]
        await upload(store, "10000001", "000001", records, lambda pan: "h:" + pan)
        await end_upload(store, "10000001", "000001", 2)
    finally:
        await store.close()


@pytest.fixture
def settled(posp: Posp, merchant: str) -> Posp:
    tmk = "0123456789ABCDEFFEDCBA9876543210"
    assert (
        posp("terminal", "add", "--id", "10000001", "--merchant", merchant, "--tmk", tmk).code == 0
    )
    asyncio.run(seed(posp))
    return posp


def test_batch_list_shows_closed_settled_batch_and_new_open_one(settled: Posp) -> None:
    rows = settled("batch", "list", "--terminal", "10000001", "--json").json()
    by_batch = {r["batch"]: r for r in rows}
    closed, opened = by_batch["000001"], by_batch["000002"]
    assert closed["status"] == "closed" and closed["settled"] and closed["balanced"] is False
    assert (closed["debit_count"], closed["debit_amount_minor"]) == (2, 3500)
    assert (closed["upload_records"], closed["upload_mismatches"]) == (2, 1)
    assert opened["status"] == "open" and not opened["settled"]


def test_batch_show_lists_upload_records_with_mismatch_reason(settled: Posp) -> None:
    shown = settled("batch", "show", "10000001", "000001", "--json").json()
    assert shown["batch"]["batch"] == "000001" and shown["batch"]["status"] == "closed"
    uploads = shown["uploads"]
    assert [(u["trace"], u["matched"]) for u in uploads] == [("000001", True), ("000003", False)]
    assert "no approved" in uploads[1]["reason"]
    table = settled("batch", "show", "10000001", "000001")
    assert table.code == 0 and "000003" in table.out


def test_batch_show_of_unknown_batch_exits_2(settled: Posp) -> None:
    result = settled("batch", "show", "10000001", "000077")
    assert result.code == 2 and "BATCH" in result.err


def test_settlement_report_csv_has_terminal_row_and_merchant_total(settled: Posp) -> None:
    today = business_date()
    result = settled("settlement", "report", "--date", today, "--format", "csv")
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert [r["terminal_id"] for r in rows] == ["10000001", "*"]
    terminal = rows[0]
    assert (terminal["debit_count"], terminal["debit_amount_minor"]) == ("2", "3500")
    assert terminal["terminal_debit_amount_minor"] == "1000"
    assert terminal["domestic_balanced"] == "False" and terminal["upload_mismatches"] == "1"


def test_settlement_report_table_and_json(settled: Posp) -> None:
    today = business_date()
    table = settled("settlement", "report", "--date", today)
    assert table.code == 0 and "10000001" in table.out and "35.00" in table.out
    rows = settled("settlement", "report", "--date", today, "--format", "json").json()
    assert rows[0]["upload_complete"] is True


def test_settlement_report_of_a_day_without_settlements_is_empty(settled: Posp) -> None:
    rows = settled("settlement", "report", "--date", "2001-01-01", "--format", "json").json()
    assert rows == []


def test_settlement_report_bad_date_exits_2_naming_date(posp: Posp) -> None:
    result = posp("settlement", "report", "--date", "21-11-2026")
    assert result.code == 2 and "--date" in result.err


async def seed_near_midnight(posp: Posp) -> None:
    """A settlement recorded at 23:30 UTC on 2025-06-01 (07:30 on the 2nd in Beijing)."""
    store = open_store(f"sqlite:///{posp.data_dir / 'posp.db'}")
    await store.open()
    try:
        moment = dt.datetime(2025, 6, 1, 23, 30, tzinfo=dt.UTC)
        zero = BatchTotals()
        await store.record_settlement(
            Settlement("10000001", MERCHANT, "000009", zero, zero, zero, zero, settled_at=moment)
        )
    finally:
        await store.close()


def test_settlement_report_date_is_the_local_business_date(
    posp: Posp, merchant: str, tmp_path: Path
) -> None:
    """23:30 UTC on the 1st is the 2nd at UTC+8 (default), the 1st at offset 0."""
    assert posp("terminal", "add", "--id", "10000001", "--merchant", merchant).code == 0
    asyncio.run(seed_near_midnight(posp))

    def batches(day: str, *config: str) -> list[str]:
        result = posp("settlement", "report", "--date", day, "--format", "json", *config)
        assert result.code == 0, result.err
        return [row["batch"] for row in result.json() if row["terminal_id"] != "*"]

    assert batches("2025-06-02") == ["000009"]
    assert batches("2025-06-01") == []
    utc_config = tmp_path / "utc.toml"
    utc_config.write_text("[network]\ntz_offset_hours = 0\n")
    assert batches("2025-06-01", "--config", str(utc_config)) == ["000009"]
    assert batches("2025-06-02", "--config", str(utc_config)) == []


async def _seed_chip(posp: Posp) -> None:
    """Batch 000001 of terminal 10000001: two approved chip purchases (traces 000001,
    000002), a TC for 000001 and one for 000009 that names nothing."""
    store = open_store(f"sqlite:///{posp.data_dir / 'posp.db'}")
    await store.open()
    try:
        for trace in ("000001", "000002"):
            await store.insert_entry(
                JournalEntry(
                    "10000001",
                    MERCHANT,
                    "000001",
                    trace,
                    "purchase",
                    "0200",
                    state=APPROVED,
                    entry_mode="05",
                )
            )
        for trace in ("000001", "000009"):
            await store.insert_entry(
                JournalEntry(
                    "10000001",
                    MERCHANT,
                    "000001",
                    trace,
                    "tc_upload",
                    "0320",
                    direction="tc",
                    state=APPROVED,
                )
            )
    finally:
        await store.close()


def test_batch_tc_report_lists_missing_and_unexpected_tcs(posp: Posp, merchant: str) -> None:
    tmk = "0123456789ABCDEFFEDCBA9876543210"
    assert (
        posp("terminal", "add", "--id", "10000001", "--merchant", merchant, "--tmk", tmk).code == 0
    )
    asyncio.run(_seed_chip(posp))
    rows = posp("batch", "tc-report", "10000001", "000001", "--json").json()
    assert {(r["trace"], r["problem"]) for r in rows} == {
        ("000002", "missing TC"),
        ("000009", "unexpected TC"),
    }
    table = posp("batch", "tc-report", "10000001", "000001")
    assert table.code == 0 and "000002" in table.out and "unexpected TC" in table.out
