"""The fleet's statistics and report: outcome classes, answered-only latency,
per-type rows, exact merge, code meanings, skipped ticks, views, metrics."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from terminals.fleet_cli import main as fleet_main
from terminals.fleet_metrics import FleetCollector
from terminals.fleet_report import FleetReport, merge_reports, write_json
from terminals.fleet_stats import FleetStats
from terminals.fleet_view import live_view, report_table
from terminals.outcome import Event, Outcome, OutcomeClass, classify
from terminals.series import SecondRow
from terminals.txn import TxnKind


def outcome(event: Event, code: str | None = None, kind: TxnKind = TxnKind.PURCHASE) -> Outcome:
    return Outcome(kind, "000001", event, code, approved=code == "00")


SAMPLES = [
    (outcome(Event.RESPONSE, "00"), "purchase"),
    (outcome(Event.RESPONSE, "51"), "purchase"),
    (outcome(Event.RESPONSE, "00", TxnKind.BALANCE), "balance"),
    (outcome(Event.TIMEOUT), "purchase"),
    (outcome(Event.COMMS_ERROR), "void"),
    (outcome(Event.MAC_FAILURE, "00"), "refund"),
    (outcome(Event.BAD_RESPONSE), "purchase"),
    (outcome(Event.RESPONSE, "00", TxnKind.SIGN_IN), "purchase"),
    (outcome(Event.RESPONSE, "00", TxnKind.REVERSAL), "purchase"),
]


def load_stats() -> FleetStats:
    stats = FleetStats()
    stats.start_load()
    return stats


def test_each_fate_has_its_class() -> None:
    assert classify(outcome(Event.RESPONSE, "00")) is OutcomeClass.APPROVED
    assert classify(outcome(Event.RESPONSE, "51")) is OutcomeClass.DECLINED
    assert classify(outcome(Event.TIMEOUT)) is OutcomeClass.TIMEOUT
    assert classify(outcome(Event.COMMS_ERROR)) is OutcomeClass.CONNECTION_ERROR
    assert classify(outcome(Event.MAC_FAILURE, "00")) is OutcomeClass.MAC_FAILURE
    assert classify(outcome(Event.BAD_RESPONSE)) is OutcomeClass.PROTOCOL_ERROR
    unusable = Outcome(TxnKind.SIGN_IN, "000001", Event.RESPONSE, "00", approved=False)
    assert classify(unusable) is OutcomeClass.PROTOCOL_ERROR


def test_latency_percentiles_cover_answered_exchanges_only() -> None:
    """A fast connection error and a slow timeout do not enter the percentiles;
    each is still counted, with its own time-to-outcome."""
    stats = load_stats()
    stats.record(outcome(Event.RESPONSE, "00"), 0.050, "purchase")
    stats.record(outcome(Event.RESPONSE, "05"), 0.100, "purchase")
    for _ in range(50):
        stats.record(outcome(Event.COMMS_ERROR), 0.0001, "purchase")
    stats.record(outcome(Event.TIMEOUT), 10.0, "purchase")
    report = FleetReport(stats, 1.0)
    assert report.answered == 2 and report.requests == 53
    assert 49.9 <= report.latency_ms["p50"] <= 50.1 and report.latency_ms["max"] <= 100.1
    by_class = report.to_json()["latency_ms_by_outcome"]
    assert by_class["connection_error"]["max"] < 1 and by_class["timeout"]["p50"] >= 9990
    assert report.outcomes["connection_error"] == 50
    assert report.threshold_values()["error_rate"] == pytest.approx(51 / 53)


def test_type_rows_use_the_mix_names_and_add_up_to_the_requests() -> None:
    stats = load_stats()
    for sample, label in SAMPLES:
        stats.record(sample, 0.01, label)
    report = FleetReport(stats, 2.0)
    types = report.types()
    assert set(types) == {"purchase", "balance", "void", "refund", "sign_in", "reversal"}
    assert sum(row["requests"] for row in types.values()) == report.requests == len(SAMPLES)
    assert types["purchase"]["outcomes"] == {
        "approved": 1, "declined": 1, "timeout": 1, "connection_error": 0,
        "mac_failure": 0, "protocol_error": 1,
    }  # fmt: skip
    assert types["purchase"]["per_s"] == 2.0


def _run(samples: list[tuple[Outcome, str, float]], seconds: float) -> FleetReport:
    stats = load_stats()
    for sample, label, latency_s in samples:
        stats.record(sample, latency_s, label)
    stats.ticks, stats.skipped = len(samples), 1
    return FleetReport(stats, seconds, {"rate": 10.0, "loop": "open", "shape": [[5, 10, 30]]})


def test_merging_two_runs_equals_one_run_over_the_same_samples(tmp_path: Path) -> None:
    """Two processes' JSON reports merged (posp-fleet merge) give the figures of
    one run that saw every sample: counts, per type, per class, percentiles."""
    rng = random.Random(5)
    samples = [
        (*rng.choice(SAMPLES), rng.lognormvariate(-4, 1.2)) for _ in range(3000)
    ]  # fmt: skip
    whole = _run(samples, 30.0)
    halves = [_run(samples[:1200], 30.0), _run(samples[1200:], 29.5)]
    paths = []
    for index, half in enumerate(halves):
        paths.append(tmp_path / f"{index}.json")
        write_json(half.to_json(), str(paths[-1]))
    out = tmp_path / "merged.json"
    with pytest.raises(SystemExit) as exited:
        fleet_main(["merge", *map(str, paths), "--json", str(out)])
    assert exited.value.code == 0
    merged = json.loads(out.read_text())
    expected = whole.to_json()
    for key in ("requests", "outcomes", "latency_ms", "latency_ms_by_outcome", "types",
                "load_response_codes", "error_rate", "approval_rate"):  # fmt: skip
        assert merged[key] == expected[key], key
    assert merged["parameters"]["merged_runs"] == 2 and merged["parameters"]["rate"] == 20.0
    assert merged["parameters"]["shape"] == [[10, 20, 30]]  # side by side: targets add up
    assert merged["offered"]["skipped"] == 2
    assert merge_reports(halves).latency_ms == whole.latency_ms


def test_merge_names_a_file_that_is_not_a_report(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"requests": 3}')
    with pytest.raises(SystemExit) as exited:
        fleet_main(["merge", str(bogus)])
    assert exited.value.code == 2


def test_report_gives_code_meanings_from_the_spec_and_explains_skipped_ticks() -> None:
    stats = load_stats()
    stats.record(outcome(Event.RESPONSE, "51"), 0.01, "purchase")
    stats.record(outcome(Event.RESPONSE, "ZZ"), 0.01, "purchase")
    stats.ticks, stats.skipped = 10, 8
    report = FleetReport(stats, 1.0, {"loop": "open"})
    data = report.to_json()
    assert data["code_meanings"] == {"51": "insufficient funds", "ZZ": "not in terminal-link §7"}
    assert data["offered"]["offered_per_s"] == 10.0 and data["offered"]["started_per_s"] == 2.0
    assert "8 of 10 ticks" in data["offered"]["note"] and "NOT applied" in data["offered"]["note"]
    console = Console(record=True, width=200)
    console.print(report_table(report))
    text = console.export_text()
    assert "insufficient funds" in text and "warning: 8 of 10 ticks" in text


def _row(**counts: int) -> SecondRow:
    base = dict.fromkeys(
        ("ticks", "skipped", "requests", "approved", "declined", "timeout",
         "connection_error", "mac_failure", "protocol_error"), 0
    )  # fmt: skip
    base.update(counts)
    return SecondRow(second=3, step=None, offered_per_s=100.0, **base,
                     p50_ms=4.0, p90_ms=8.0, p99_ms=12.5, max_ms=20.0)  # fmt: skip


def test_live_view_shows_the_last_second_elapsed_and_remaining() -> None:
    stats = load_stats()
    console = Console(record=True, width=200)
    console.print(live_view(_row(requests=99, approved=99), stats, 30.0))
    text = console.export_text()
    assert "remaining" in text and "12.5" in text and "99" in text


def test_metrics_expose_outcomes_by_type_and_the_last_seconds_latency() -> None:
    stats = load_stats()
    for sample, label in SAMPLES:
        stats.record(sample, 0.01, label)
    collector = FleetCollector(stats)
    collector.last_row = _row(requests=5)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert 'posp_fleet_requests_total{outcome="approved",type="purchase"} 1.0' in text
    assert 'posp_fleet_latency_seconds{quantile="0.99"} 0.0125' in text
    assert 'posp_fleet_responses_total{code="51"} 1.0' in text
