"""``posp risk validate`` and ``posp risk backtest`` end to end through main()."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

from posp.store.api import JournalEntry
from posp.store.sqlite import SqliteStore
from tests.cli.conftest import Posp, Result

DEFAULT = str(Path(__file__).parents[2] / "posp" / "risk" / "default_ruleset.toml")


def _flat(text: str) -> str:
    """stderr without the console's line wrapping."""
    return " ".join(text.split()).replace(": \n", ": ")


def test_validate_lists_the_default_rules_and_exits_0(posp: Posp) -> None:
    result = posp("risk", "validate", DEFAULT, "--json")
    assert result.code == 0, result.err
    rules = result.json()
    assert len(rules) == 17 and rules[0]["rule"] == "single-amount"


def test_validate_names_the_bad_field_and_exits_2(posp: Posp, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\n[[rules]]\nid = "cap"\nkind = "interval"\nmin_interval_s = -1\n')
    result = posp("risk", "validate", str(bad))
    assert result.code == 2 and 'rules[0] (id "cap").min_interval_s' in _flat(result.err)
    assert posp("risk", "validate", str(tmp_path / "missing.toml")).code == 2


def _backtest_day(posp: Posp, *options: str, day: str = "2026-12-03") -> Result:
    """``posp risk backtest`` of the default ruleset over one local day."""
    return posp("risk", "backtest", DEFAULT, "--from", day, "--to", day, *options)


def _row(amount_minor: int, minute: int, **extra: object) -> str:
    row = {
        "txn_type": "purchase",
        "amount_minor": amount_minor,
        "card_hash": "ab" * 16,
        "bin": "622588",
        "terminal_id": "10000001",
        "merchant_id": "898290054110001",
        "mcc": "5411",
        "local_time": f"2026-12-03T12:{minute:02d}:00",
        **extra,
    }
    return json.dumps(row)


def test_backtest_of_a_rows_file_reports_per_rule(posp: Posp, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "\n".join(_row(3_000_000, m) for m in range(4))
        + "\n"
        + _row(1, 9, local_time="2026-12-09T12:00:00")
    )
    result = _backtest_day(posp, "--rows", str(rows), "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert report["rows"] == 4 and report["declined_rows"] == 1  # the row of the 9th is outside
    by_rule = {r["rule"]: r for r in report["rules"]}
    assert by_rule["card-day-amount"]["declined"] == 1
    assert by_rule["card-terminal-day-count"]["flagged"] == 2


def test_backtest_rejects_a_bad_row_naming_line_and_field(posp: Posp, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(_row(1, 0) + "\n" + _row(-5, 1) + "\n")
    result = _backtest_day(posp, "--rows", str(rows))
    assert result.code == 2 and "rows.jsonl:2: amount_minor" in _flat(result.err)


def test_backtest_arguments_are_checked(posp: Posp) -> None:
    assert posp("risk", "backtest", DEFAULT, "--from", "2026-12-04", "--to", "2026-12-03").code == 2
    assert posp("risk", "backtest", DEFAULT, "--from", "yesterday", "--to", "2026-12-03").code == 2


async def _journal(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        for trace in range(1, 5):
            await store.insert_entry(
                JournalEntry(
                    terminal_id="10000001",
                    merchant_id="898290054110001",
                    batch="000001",
                    trace=f"{trace:06d}",
                    txn_type="purchase",
                    mti="0200",
                    amount_minor=3_000_000,
                    pan_masked="622588******0001",
                    pan_hash="cd" * 16,
                    state="approved",
                    created_at=dt.datetime(2026, 12, 3, 4, trace, tzinfo=dt.UTC),  # 12:0x local
                )
            )
    finally:
        await store.close()


def test_backtest_replays_the_journal_of_the_local_days(posp: Posp) -> None:
    posp.data_dir.mkdir(parents=True)
    asyncio.run(_journal(posp.data_dir / "posp.db"))
    result = posp(
        "risk", "backtest", DEFAULT, "--from", "2026-12-03", "--to", "2026-12-03", "--json"
    )
    assert result.code == 0, result.err
    assert (result.json()["rows"], result.json()["declined_rows"]) == (4, 1)
    other_day = posp(
        "risk", "backtest", DEFAULT, "--from", "2026-12-04", "--to", "2026-12-04", "--json"
    )
    assert other_day.json()["rows"] == 0


async def _decided(path: Path) -> None:
    """A journaled purchase with a flag decision kept by the risk step."""
    from posp.store.risk_records import SqlRiskRecords

    store = SqliteStore(path)
    await store.open()
    try:
        entry_id = await store.insert_entry(
            JournalEntry(
                terminal_id="10000001",
                merchant_id="898290054110001",
                batch="000001",
                trace="000009",
                txn_type="purchase",
                mti="0200",
                amount_minor=1_000_000,
                pan_masked="622588******0001",
                pan_hash="cd" * 16,
                state="approved",
                rrn="123456789012",
            )
        )
        decision = {"rule": "round-amount", "version": "v7", "action": "flag", "code": "59"}
        await SqlRiskRecords(store).keep(
            entry_id,
            rrn="123456789012",
            terminal_id="10000001",
            local_day=dt.date(2026, 12, 3),
            ruleset_version="v7",
            outcome="flag",
            flagged=True,
            decisions=[{**decision, "triggered": {"amount_minor": "1000000"}}],
            hold=None,
        )
    finally:
        await store.close()


def test_explain_shows_the_rule_version_and_inputs_of_an_rrn(posp: Posp) -> None:
    posp.data_dir.mkdir(parents=True)
    asyncio.run(_decided(posp.data_dir / "posp.db"))
    result = posp("risk", "explain", "123456789012", "--json")
    assert result.code == 0, result.err
    (row,) = result.json()
    assert (row["rule"], row["version"], row["action"]) == ("round-amount", "v7", "flag")
    assert row["inputs"] == "amount_minor=1000000" and row["card"] == "622588******0001"
    assert posp("risk", "explain", "999999999999").code == 2
    assert posp("risk", "explain", "12ab").code == 2


def test_flagged_lists_the_days_flagged_transactions_only(posp: Posp) -> None:
    posp.data_dir.mkdir(parents=True)
    asyncio.run(_decided(posp.data_dir / "posp.db"))
    day = posp("risk", "flagged", "--date", "2026-12-03", "--json")
    assert day.code == 0, day.err
    assert [r["rrn"] for r in day.json()] == ["123456789012"]
    assert posp("risk", "flagged", "--date", "2026-12-04", "--json").json() == []
    assert posp("risk", "flagged", "--date", "tomorrow").code == 2


def test_terminal_reactivate_and_unbind_journal_their_events(posp: Posp, merchant: str) -> None:
    assert posp("terminal", "add", "--id", "10000001", "--merchant", merchant).code == 0
    reactivated = posp("terminal", "reactivate", "10000001", "--json")
    assert reactivated.code == 0, reactivated.err
    assert reactivated.json() == {"terminal_id": "10000001", "event": "reactivated"}
    assert posp("terminal", "unbind", "10000001", "--json").json()["event"] == "unbound"
    assert posp("terminal", "unbind", "99999999").code == 2
