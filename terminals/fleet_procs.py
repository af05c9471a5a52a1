"""Several fleet processes as one run (``--processes N``) and ``posp-fleet merge``.

One Python process saturates one core, so a big load runs N ``posp-fleet``
processes, each over its own slice of the fleet (``--slice I/N``: disjoint
terminals, an N-th of the rate, count and concurrency), each writing its JSON
report; the parent merges the reports exactly (counts and HdrHistograms add).

Invariants: the children run in their own session, so a Ctrl-C reaches them
once, forwarded by the parent (a second one would cancel their in-flight
requests); a child that wrote no report fails the run and says which child;
``merge`` reads only reports it can decode and names the file it cannot.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from rich.console import Console

from terminals.fleet_args import parsed_by
from terminals.fleet_config import FleetConfig, parameters_of
from terminals.fleet_report import FleetReport, check_writable, merge_reports
from terminals.thresholds import parse_fail_on


def series_path(series: str, index: int) -> str:
    """Process ``index``'s series file: ``run.csv`` -> ``run.1.csv``."""
    path = Path(series)
    return str(path.with_name(f"{path.stem}.{index + 1}{path.suffix}"))


def _child_argv(argv: Sequence[str], args: argparse.Namespace, index: int, out: Path) -> list[str]:
    child = [sys.executable, "-m", "terminals.fleet_cli", *argv]
    child += ["--slice", f"{index}/{args.processes}", "--quiet", "--json", str(out)]
    if args.series:
        child += ["--series", series_path(args.series, index)]
    if args.metrics_port:
        child += ["--metrics-port", str(args.metrics_port + index)]
    return child


def run_processes(
    argv: Sequence[str], args: argparse.Namespace, config: FleetConfig, console: Console
) -> FleetReport:
    """Run ``args.processes`` fleet processes and merge their reports."""
    started_at = datetime.now(UTC)
    received: list[str] = []
    with tempfile.TemporaryDirectory(prefix="posp-fleet-") as tmp:
        outs = [Path(tmp) / f"{i}.json" for i in range(args.processes)]
        children = [
            subprocess.Popen(_child_argv(argv, args, i, out), start_new_session=True)
            for i, out in enumerate(outs)
        ]

        def forward(signum: int, _frame: FrameType | None) -> None:
            received.append(signal.Signals(signum).name)
            for child in children:
                if child.poll() is None:
                    child.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        print(f"posp-fleet: {args.processes} processes started", file=sys.stderr, flush=True)
        try:
            codes = [child.wait() for child in children]
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        reports = []
        for index, (out, code) in enumerate(zip(outs, codes, strict=True)):
            if not out.exists():
                console.print(f"[red]posp-fleet: process {index + 1} exited {code}, no report[/]")
                raise SystemExit(1)
            reports.append(FleetReport.from_json(json.loads(out.read_text(encoding="utf-8"))))
    merged = merge_reports(reports)
    parameters = {**parameters_of(config, started_at), "processes": args.processes}
    interrupted = received[0] if received else merged.interrupted
    return FleetReport(merged.stats, merged.duration_s, parameters, interrupted)


def merge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="posp-fleet merge",
        description="Combine the JSON reports of fleet runs made side by side into one report",
    )
    p.add_argument("reports", nargs="+", metavar="REPORT.json")
    p.add_argument("--json", metavar="FILE", help="write the merged report as JSON ('-' = stdout)")
    p.add_argument(
        "--fail-on", type=parsed_by(parse_fail_on), action="append", default=[],
        metavar="CONDITIONS", help="exit 1 when a condition holds (as for a run)",
    )  # fmt: skip
    return p


def merge_main(argv: Sequence[str], console: Console) -> None:
    """``posp-fleet merge A.json B.json ... [--json OUT] [--fail-on ...]``."""
    from terminals.fleet_cli import finish

    args = merge_parser().parse_args(argv)
    reports = []
    try:
        if args.json:
            check_writable(args.json)
        for name in args.reports:
            try:
                data = json.loads(Path(name).read_text(encoding="utf-8"))
                reports.append(FleetReport.from_json(data))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{name}: {exc}") from exc
    except (OSError, ValueError) as exc:
        console.print(f"[red]posp-fleet merge: {exc}[/red]", highlight=False)
        raise SystemExit(2) from None
    finish(merge_reports(reports), args, console)
