"""``posp-fleet``: drive a switch with a fleet of simulated terminals.

Example::

    posp-fleet --fleet-file fleet.json --rate 1500 --duration 60 --long-connections
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from rich.console import Console
from rich.live import Live

from posp.errors import ConfigError
from posp.lab.fleetfile import read_fleet_file
from terminals.cards import load_cards
from terminals.chipwallet import save_atcs
from terminals.fleet import FleetConfig, run_fleet
from terminals.fleet_report import (
    FleetReport,
    FleetStats,
    progress_table,
    report_table,
    write_json,
)
from terminals.mix import DEFAULT_MIX, parse_mix
from terminals.txn import SIGN_IN_VARIANTS


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posp-fleet", description=__doc__.splitlines()[0])
    p.add_argument("--fleet-file", required=True, help="terminal ids, merchant ids and TMKs (JSON)")
    p.add_argument("--terminals", type=int, help="use only the first N terminals of the file")
    p.add_argument("--cards", help="demo card file (default: issuer_sim's DEMO_CARDS)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5800)
    loop = p.add_mutually_exclusive_group()
    loop.add_argument("--rate", type=float, help="open loop: target transactions per second")
    loop.add_argument("--concurrency", type=int, help="closed loop: transactions in flight")
    p.add_argument("--duration", type=float, help="seconds of load (default 10 without --count)")
    p.add_argument("--count", type=int, help="number of transactions to start")
    p.add_argument(
        "--mix", default=DEFAULT_MIX, help=f"transaction weights (default {DEFAULT_MIX})"
    )
    p.add_argument("--pin-ratio", type=_ratio, default=0.5, help="share of PIN transactions")
    p.add_argument("--ic-ratio", type=_ratio, default=0.3, help="share of IC (chip) reads")
    p.add_argument("--settle-every", type=float, metavar="S", help="settle each terminal every S s")
    p.add_argument("--long-connections", action="store_true", help="one connection per terminal")
    p.add_argument("--sign-in-variant", choices=SIGN_IN_VARIANTS, default="003")
    p.add_argument("--timeout-s", type=float, default=10.0, help="response timeout")
    p.add_argument(
        "--ramp-up", type=float, default=0.0, metavar="S", help="spread sign-ins over S s"
    )
    p.add_argument(
        "--hold",
        type=float,
        metavar="S",
        help="with --long-connections: hold every connection idle S s, count drops, echo each",
    )
    p.add_argument("--seed", type=int, help="random seed for a reproducible mix")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON ('-' = stdout)")
    p.add_argument("--quiet", action="store_true", help="no live progress")
    return p


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    terminals = read_fleet_file(args.fleet_file)
    if args.terminals is not None:
        terminals = terminals[: args.terminals]
    try:
        mix = parse_mix(args.mix)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return FleetConfig(
        terminals=terminals,
        cards=load_cards(args.cards),
        host=args.host,
        port=args.port,
        rate=args.rate,
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
    )


async def _run_with_live(config: FleetConfig, console: Console) -> FleetReport:
    last = {"t": time.perf_counter(), "n": 0}

    with Live(console=console, refresh_per_second=4, transient=True) as live:

        def show(stats: FleetStats) -> None:
            now = time.perf_counter()
            rate = (stats.requests - last["n"]) / max(now - last["t"], 1e-9)
            last["t"], last["n"] = now, stats.requests
            live.update(progress_table(stats, rate))

        config.progress = show
        return await run_fleet(config)


def run_async(coro: Coroutine[Any, Any, FleetReport]) -> FleetReport:
    """Run on uvloop when it is installed (the fleet must not be the bottleneck)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.hold is not None and not args.long_connections:
        build_parser().error("--hold needs --long-connections")
    console = Console(stderr=True)
    try:
        config = config_from_args(args)
    except (ConfigError, ValueError, OSError) as exc:
        console.print(f"[red]posp-fleet: {exc}[/red]")
        raise SystemExit(2) from None
    try:
        if args.quiet:
            report = run_async(run_fleet(config))
        else:
            report = run_async(_run_with_live(config, console))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:
        save_atcs()  # chip cards: the next run's ATCs continue from here
    if args.json != "-":
        console.print(report_table(report))
    if args.json:
        write_json(report.to_json(), args.json)


if __name__ == "__main__":
    main()
