"""What a person sees of a fleet run: the live view and the final report (rich).

Invariants: the live view's rate and percentiles are of the last whole second
(windowed, never cumulative), beside the run's cumulative counts; the final
report shows every response code with its meaning, the offered vs achieved
rate with a warning when ticks were skipped, and why a run failed.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from terminals.fleet_report import FleetReport
from terminals.fleet_stats import FleetStats
from terminals.outcome import OutcomeClass
from terminals.response_codes import meaning
from terminals.series import SecondRow

_CLASSES = tuple(c.value for c in OutcomeClass)


def _latency_cells(latency: dict[str, float]) -> list[str]:
    return [f"{latency[k]:.1f}" for k in ("p50", "p90", "p99", "max")]


def summary_table(report: FleetReport) -> Table:
    table = Table(title="posp-fleet", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("duration", f"{report.duration_s:.1f} s")
    table.add_row("requests (load phase)", f"{report.requests} ({report.requests_per_s:.1f}/s)")
    for name, count in report.outcomes.items():
        share = count / report.requests if report.requests else 0.0
        table.add_row(name.replace("_", " "), f"{count} ({share:.1%})")
    latency = report.latency_ms
    table.add_row(
        "latency, answered only",
        " ".join(f"{k} {v:.1f}" for k, v in latency.items() if k != "mean") + " ms",
    )
    offered = report.offered()
    if offered["loop"] == "open":
        table.add_row(
            "offered / started",
            f"{offered['offered_per_s']:.1f}/s / {offered['started_per_s']:.1f}/s",
        )
    for name in ("reversals_sent", "settlements", "sign_ins", "sign_ins_per_s"):
        table.add_row(name.replace("_", " ") + " (all phases)", str(getattr(report, name)))
    if report.parameters.get("hold_s") is not None:
        for name in ("held_connections", "dropped_connections", "probe_failures", "reconnects"):
            table.add_row(name.replace("_", " "), str(getattr(report, name)))
    for name, count in report.errors.items():
        table.add_row(f"fleet error {name}", str(count))
    return table


def types_table(report: FleetReport) -> Table:
    table = Table(title="per transaction type (latency ms, answered only)")
    for column in ("type", "requests", "per s", *_CLASSES, "p50", "p90", "p99", "max"):
        table.add_column(column.replace("_", " "), justify="left" if column == "type" else "right")
    for name, row in report.types().items():
        outcomes = row["outcomes"]
        table.add_row(
            name,
            str(row["requests"]),
            f"{row['per_s']:.1f}",
            *(str(outcomes[c]) for c in _CLASSES),
            *_latency_cells(row["latency_ms"]),
        )
    return table


def codes_table(report: FleetReport) -> Table:
    table = Table(title="response codes (load phase)")
    table.add_column("code")
    table.add_column("count", justify="right")
    table.add_column("meaning (terminal-link §7)")
    for code, count in report.load_response_codes.items():
        table.add_row(code, str(count), meaning(code))
    return table


def steps_table(steps: list[dict[str, Any]]) -> Table:
    table = Table(title="per step of the load shape (latency ms, answered only)")
    columns = ("target/s", "seconds", "offered", "skipped", "achieved/s", "answered/s")
    for column in (*columns, "errors", "p50", "p90", "p99", "max"):
        table.add_column(column, justify="right")
    for row in steps:
        target = row["target_per_s"]
        shown = f"{target[0]:g}->{target[1]:g}" if isinstance(target, list) else f"{target:g}"
        errors = row["requests"] - row["outcomes"]["approved"] - row["outcomes"]["declined"]
        table.add_row(
            shown,
            f"{row['seconds']:.1f}",
            str(row["ticks"]),
            str(row["skipped"]),
            f"{row['per_s']:.1f}",
            f"{row['answered_per_s']:.1f}",
            str(errors),
            *_latency_cells(row["latency_ms"]),
        )
    return table


def report_table(report: FleetReport) -> RenderableType:
    """The final report."""
    parts: list[RenderableType] = [summary_table(report)]
    if report.stats.by_type:
        parts.append(types_table(report))
    if report.load_response_codes:
        parts.append(codes_table(report))
    if steps := report.steps():
        parts.append(steps_table(steps))
    if note := report.offered().get("note"):
        parts.append(Text(f"warning: {note}", style="yellow"))
    if report.interrupted:
        parts.append(Text(f"stopped early by {report.interrupted}", style="yellow"))
    parts.extend(Text(f"FAILED: {failure}", style="bold red") for failure in report.failures)
    return Group(*parts)


def live_view(row: SecondRow, stats: FleetStats, total_s: float | None) -> RenderableType:
    """The live view after each second: progress and the last second's figures."""
    elapsed_s = stats.load_elapsed_s
    parts: list[RenderableType] = []
    if total_s is not None:
        remaining_s = max(total_s - elapsed_s, 0.0)
        parts.append(ProgressBar(total=total_s, completed=min(elapsed_s, total_s), width=60))
        parts.append(Text(f"elapsed {elapsed_s:.0f} s, remaining {remaining_s:.0f} s"))
    else:
        parts.append(Text(f"elapsed {elapsed_s:.0f} s"))
    table = Table(title="last second (cumulative counts in brackets)")
    columns = ("offered/s", "req/s", "p50 ms", "p99 ms", "approved", "declined", "errors")
    for column in (*columns, "skipped"):
        table.add_column(column, justify="right")
    total = stats.total
    errors = row.timeout + row.connection_error + row.mac_failure + row.protocol_error
    table.add_row(
        "-" if row.offered_per_s is None else f"{row.offered_per_s:.0f}",
        str(row.requests),
        f"{row.p50_ms:.1f}",
        f"{row.p99_ms:.1f}",
        f"{row.approved} ({total.outcomes['approved']})",
        f"{row.declined} ({total.outcomes['declined']})",
        f"{errors} ({total.errors})",
        f"{row.skipped} ({stats.skipped})",
    )
    parts.append(table)
    return Group(*parts)
