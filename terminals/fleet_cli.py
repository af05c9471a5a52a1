"""``posp-fleet``: drive a switch with a fleet of simulated terminals.

Example::

    posp-fleet --fleet-file fleet.json --steps 500x30,1000x30 --long-connections \
        --json run.json --series run.csv --fail-on 'error_rate>1%,p99>250'
    posp-fleet merge a.json b.json --json all.json

Exit status: 0 done; 1 the run failed (a ``--fail-on`` threshold held, or the
switch never answered); 2 misuse (a bad option, an unwritable output path),
before anything runs; 128 + the signal number when SIGINT/SIGTERM stopped the
run early (its report and JSON are still written).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from posp.errors import ConfigError
from posp.lab.fleetfile import read_fleet_file
from terminals.cards import load_cards
from terminals.chipwallet import save_atcs
from terminals.fleet import FleetConfig, FleetControl, run_fleet
from terminals.fleet_args import build_parser, shape_of, sliced, thresholds_of, usage_errors
from terminals.fleet_metrics import FleetCollector, serve_metrics
from terminals.fleet_report import FleetReport, check_writable, write_json
from terminals.fleet_software import FleetSoftware, read_trusted_root
from terminals.fleet_stats import FleetStats
from terminals.fleet_view import live_view, report_table
from terminals.mix import parse_mix
from terminals.series import SecondRow, SeriesWriter
from terminals.thresholds import Threshold, breaches

EXIT_FAILED = 1
EXIT_USAGE = 2


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    terminals = read_fleet_file(args.fleet_file)
    if args.terminals is not None:
        terminals = terminals[: args.terminals]
    try:
        mix = parse_mix(args.mix)
    except ValueError as exc:
        raise ConfigError(f"--mix: {exc}") from exc
    return FleetConfig(
        terminals=terminals,
        cards=load_cards(args.cards),
        host=args.host,
        port=args.port,
        rate=args.rate,
        shape=shape_of(args),
        concurrency=args.concurrency,
        duration_s=args.duration,
        count=args.count,
        mix=mix,
        pin_ratio=args.pin_ratio,
        ic_ratio=args.ic_ratio,
        settle_every_s=args.settle_every,
        long_connections=args.long_connections,
        sign_in_variant=args.sign_in_variant,
        timeout_s=args.timeout_s,
        ramp_up_s=args.ramp_up,
        hold_s=args.hold,
        seed=args.seed,
        software=_software(args),
    )


def _software(args: argparse.Namespace) -> FleetSoftware | None:
    """The terminals' updaters when the run drives software rollouts (--tms-url)."""
    if args.tms_url is None or args.tms_root is None:
        return None
    work_dir = args.software_dir or Path(tempfile.mkdtemp(prefix="posp-fleet-software-"))
    return FleetSoftware(
        args.tms_url,
        read_trusted_root(args.tms_root),
        work_dir,
        model=args.model,
        acquirer_id=args.acquirer_id,
        app_version=args.app_version,
    )


def software_summary(software: FleetSoftware | None) -> str | None:
    """One line on where the fleet's software ended (versions, refused installs)."""
    if software is None:
        return None
    versions = ", ".join(f"{v}: {n}" for v, n in sorted(software.versions().items()))
    refused = ", ".join(f"{r}: {n}" for r, n in sorted(software.refusals().items()))
    return f"software versions {versions or 'none'}; refused installs {refused or 'none'}"


def judge(report: FleetReport, thresholds: Sequence[Threshold]) -> FleetReport:
    """The report with why the run failed: thresholds that hold, an unreachable switch."""
    failures = list(breaches(thresholds, report.threshold_values()))
    if report.unreachable:
        target = report.parameters.get("target", "the switch")
        failures.insert(
            0,
            f"no request got an answer from {target} ({report.comms_errors} connection"
            f" errors, {report.timeouts} timeouts): is the switch running there?",
        )
    return replace(report, failures=(*report.failures, *failures))


def exit_status(report: FleetReport) -> int:
    if report.failures:
        return EXIT_FAILED
    if report.interrupted:
        return 128 + signal.Signals[report.interrupted].value
    return 0


def run_async(coro: Coroutine[Any, Any, FleetReport]) -> FleetReport:
    """Run on uvloop when it is installed (the fleet must not be the bottleneck)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _announce(text: str) -> None:
    """A line on stderr that scripts (and tests) can wait for."""
    print(f"posp-fleet: {text}", file=sys.stderr, flush=True)


async def _run(
    config: FleetConfig, args: argparse.Namespace, console: Console, collector: FleetCollector
) -> FleetReport:
    """The run with signal handlers, the live view, the series and metrics."""
    control = FleetControl()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, control.request_stop, signum.name)
    hooks: list[Callable[[SecondRow, FleetStats], None]] = []

    def on_second(row: SecondRow, stats: FleetStats) -> None:
        collector.stats, collector.last_row = stats, row
        for hook in hooks:
            hook(row, stats)

    series = SeriesWriter(Path(args.series)) if args.series else None
    if series is not None:
        hooks.append(lambda row, _stats: series.write(row))
    shape = config.load_shape
    total_s = shape.duration_s if shape is not None and shape.stepped else config.duration_s
    live = None if args.quiet else Live(console=console, refresh_per_second=4, transient=True)
    if live is not None:
        hooks.append(lambda row, stats: live.update(live_view(row, stats, total_s)))
        live.start()
    config.on_second = on_second
    config.on_phase = _announce
    try:
        return await run_fleet(config, control)
    finally:
        if live is not None:
            live.stop()
        if series is not None:
            series.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        save_atcs()  # chip cards: the next run's ATCs continue from here


def finish(report: FleetReport, args: argparse.Namespace, console: Console) -> None:
    """Judge, print and write the report, and exit with its status."""
    report = judge(report, thresholds_of(args))
    one_of_several = getattr(args, "slice", None) is not None  # the parent prints the whole
    if args.json != "-" and not one_of_several:
        console.print(report_table(report))
    if args.json:
        write_json(report.to_json(), args.json)
    raise SystemExit(exit_status(report))


def _usage(console: Console, message: str) -> None:
    console.print(f"[red]posp-fleet: {message}[/red]", highlight=False)
    raise SystemExit(EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    console = Console(stderr=True)
    if argv[:1] == ["merge"]:
        from terminals.fleet_procs import merge_main

        merge_main(argv[1:], console)
        return
    args = build_parser().parse_args(argv)
    try:
        for target in (args.json, args.series):
            if target:
                check_writable(target)
        config = config_from_args(args)
    except (ConfigError, ValueError, OSError) as exc:
        _usage(console, str(exc))
    for problem in usage_errors(args, len(config.terminals)):
        _usage(console, problem)
    if args.processes > 1 and args.slice is None:
        from terminals.fleet_procs import run_processes

        finish(run_processes(argv, args, config, console), args, console)
    if args.slice is not None:
        config = sliced(config, *args.slice)
    collector = FleetCollector()
    stop_metrics = None
    if args.metrics_port is not None:
        try:
            stop_metrics = serve_metrics(args.metrics_port, collector)
        except OSError as exc:
            _usage(console, f"--metrics-port {args.metrics_port}: {exc.strerror or exc}")
    try:
        report = run_async(_run(config, args, console, collector))
    finally:
        if stop_metrics is not None:
            stop_metrics()
        summary = software_summary(config.software)
        if summary is not None:
            console.print(summary, highlight=False)
    finish(report, args, console)


if __name__ == "__main__":
    main()
