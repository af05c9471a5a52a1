"""Fleet statistics while running, and the final report (rich table + JSON).

Invariants: latencies are recorded only during the load phase (sign-ins of
the ramp-up do not distort them); ``requests_per_s`` counts every exchange
of the load phase (transactions, reversals, sign-ins, settlements) over its
wall-clock duration.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from terminals.latency import LatencyHistogram
from terminals.outcome import Event, Outcome
from terminals.txn import TxnKind

PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))


@dataclass
class FleetStats:
    """Mutable counters the sessions update through ``record``."""

    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    codes: Counter[str] = field(default_factory=Counter)
    load_codes: Counter[str] = field(default_factory=Counter)  # the load window only
    transactions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    load_requests: int = 0
    timeouts: int = 0
    comms_errors: int = 0
    mac_failures: int = 0
    reversals_sent: int = 0
    sign_ins: int = 0
    settlements: int = 0
    skipped: int = 0
    sign_in_phase_s: float = 0.0
    ramp_sign_ins: int = 0
    held_connections: int = 0
    dropped_connections: int = 0
    probe_failures: int = 0
    reconnects: int = 0
    load_started: float | None = None
    load_stopped: float | None = None

    def record(self, outcome: Outcome, latency_s: float) -> None:
        self.requests += 1
        event = outcome.event
        if event is Event.RESPONSE:
            self.codes[outcome.response_code or "??"] += 1
        else:
            self.codes[event.value] += 1
            if event is Event.TIMEOUT:
                self.timeouts += 1
            elif event is Event.MAC_FAILURE:
                self.mac_failures += 1
            elif event is Event.COMMS_ERROR:
                self.comms_errors += 1
        if outcome.kind is TxnKind.REVERSAL:
            self.reversals_sent += 1
        elif outcome.kind is TxnKind.SIGN_IN:
            self.sign_ins += 1
        if self.load_started is not None and self.load_stopped is None:
            self.load_requests += 1
            if event is Event.RESPONSE:
                self.load_codes[outcome.response_code or "??"] += 1
            self.latency.record(latency_s)

    def start_load(self) -> None:
        self.load_started = time.perf_counter()

    def stop_load(self) -> None:
        self.load_stopped = time.perf_counter()

    @property
    def load_elapsed_s(self) -> float:
        if self.load_started is None:
            return 0.0
        return (self.load_stopped or time.perf_counter()) - self.load_started

    def report(self) -> FleetReport:
        elapsed_s = self.load_elapsed_s
        hist = self.latency
        return FleetReport(
            duration_s=round(elapsed_s, 3),
            requests=self.load_requests,
            requests_per_s=round(self.load_requests / elapsed_s, 1) if elapsed_s else 0.0,
            latency_ms={
                **{name: round(hist.percentile_s(q) * 1000, 3) for name, q in PERCENTILES},
                "max": round(hist.max_s * 1000, 3),
                "mean": round(hist.mean_s * 1000, 3),
            },
            response_codes=dict(sorted(self.codes.items())),
            load_response_codes=dict(sorted(self.load_codes.items())),
            transactions=dict(sorted(self.transactions.items())),
            timeouts=self.timeouts,
            comms_errors=self.comms_errors,
            mac_failures=self.mac_failures,
            reversals_sent=self.reversals_sent,
            sign_ins=self.sign_ins,
            settlements=self.settlements,
            skipped=self.skipped,
            errors=dict(self.errors),
            sign_in_phase_s=round(self.sign_in_phase_s, 3),
            sign_ins_per_s=(
                round(self.ramp_sign_ins / self.sign_in_phase_s, 1) if self.sign_in_phase_s else 0.0
            ),
            held_connections=self.held_connections,
            dropped_connections=self.dropped_connections,
            probe_failures=self.probe_failures,
            reconnects=self.reconnects,
        )


@dataclass(frozen=True)
class FleetReport:
    """The outcome of a fleet run."""

    duration_s: float
    requests: int
    requests_per_s: float
    latency_ms: dict[str, float]
    response_codes: dict[str, int]
    transactions: dict[str, int]
    timeouts: int
    comms_errors: int
    mac_failures: int
    reversals_sent: int
    sign_ins: int
    settlements: int
    skipped: int
    errors: dict[str, int]
    # the sign-in phase (ramp-up) and, with --hold, the held connections
    sign_in_phase_s: float = 0.0
    sign_ins_per_s: float = 0.0
    held_connections: int = 0
    dropped_connections: int = 0
    probe_failures: int = 0
    reconnects: int = 0
    # response codes of the requests counted in ``requests`` (the load window)
    load_response_codes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def report_table(report: FleetReport) -> Table:
    """The final report as a rich table."""
    table = Table(title="posp-fleet", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("duration", f"{report.duration_s:.1f} s")
    table.add_row("requests", str(report.requests))
    table.add_row("requests/s", f"{report.requests_per_s:.1f}")
    for name, value in report.latency_ms.items():
        table.add_row(f"latency {name}", f"{value:.2f} ms")
    for kind, count in report.transactions.items():
        table.add_row(f"txn {kind}", str(count))
    for code, count in report.response_codes.items():
        table.add_row(f"code {code}", str(count))
    for name in (
        "timeouts",
        "comms_errors",
        "mac_failures",
        "reversals_sent",
        "sign_ins",
        "settlements",
        "skipped",
        "sign_ins_per_s",
        "held_connections",
        "dropped_connections",
        "probe_failures",
        "reconnects",
    ):
        table.add_row(name.replace("_", " "), str(getattr(report, name)))
    for name, count in report.errors.items():
        table.add_row(f"error {name}", str(count))
    return table


def progress_table(stats: FleetStats, rate_per_s: float) -> Table:
    """One live line of progress."""
    table = Table(show_header=True)
    for column in (
        "req/s",
        "requests",
        "p50 ms",
        "p99 ms",
        "approved",
        "declined",
        "timeouts",
        "reversals",
        "MAC fail",
    ):
        table.add_column(column, justify="right")
    approved = stats.codes.get("00", 0)
    declined = sum(n for code, n in stats.codes.items() if code != "00") - stats.timeouts
    table.add_row(
        f"{rate_per_s:.0f}",
        str(stats.requests),
        f"{stats.latency.percentile_s(0.5) * 1000:.1f}",
        f"{stats.latency.percentile_s(0.99) * 1000:.1f}",
        str(approved),
        str(declined),
        str(stats.timeouts),
        str(stats.reversals_sent),
        str(stats.mac_failures),
    )
    return table


def write_json(value: Any, target: str) -> None:
    """Write ``value`` as indented JSON to the file ``target`` ('-' = stdout)."""
    text = json.dumps(value, indent=1) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text, encoding="utf-8")
