"""``posp-conformance``: run the conformance catalogue against a switch.

Exit status 0 when every scenario run passes (PENDING ones do not count),
1 on any failure, 2 on bad input.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from posp.errors import ConfigError
from posp.lab.fleetfile import read_fleet_file
from posp.version import add_version_flag
from terminals.cards import load_cards
from terminals.chipwallet import save_atcs
from terminals.conformance import ConformanceTarget, ScenarioResult, Status, run_catalogue
from terminals.fleet_report import write_json
from terminals.scenarios import CATALOGUE
from terminals.txn import SIGN_IN_VARIANTS

STYLE = {Status.PASS: "green", Status.FAIL: "red", Status.PENDING: "yellow"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posp-conformance", description=__doc__.splitlines()[0])
    add_version_flag(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5800)
    p.add_argument("--fleet-file", help="provisioned terminals (>= 3) with their TMKs")
    p.add_argument("--cards", help="demo card file (default: issuer_sim's DEMO_CARDS)")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this scenario")
    p.add_argument(
        "--pending",
        default="",
        metavar="TAGS",
        help="comma-separated feature tags not yet available: reported PENDING",
    )
    p.add_argument("--timeout-s", type=float, default=10.0, help="response timeout")
    p.add_argument(
        "--drop-timeout-s",
        type=float,
        default=3.0,
        help="response timeout of the dropped-answer scenario",
    )
    p.add_argument("--sign-in-variant", choices=SIGN_IN_VARIANTS, default="003")
    p.add_argument(
        "--transfer-cap-minor",
        type=int,
        default=5_000_000,
        help="the switch's single-transfer cap for terminal 1 (fen)",
    )
    p.add_argument("--json", metavar="FILE", help="write results as JSON ('-' = stdout)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p


def results_table(results: list[ScenarioResult]) -> Table:
    table = Table(title="posp-conformance")
    for column in ("scenario", "feature", "result", "reason"):
        table.add_column(column)
    for r in results:
        table.add_row(r.name, r.feature, f"[{STYLE[r.status]}]{r.status.value}[/]", r.reason)
    return table


def _list(console: Console) -> None:
    table = Table(title="conformance scenarios")
    for column in ("scenario", "feature", "description"):
        table.add_column(column)
    for s in CATALOGUE:
        table.add_row(s.name, s.feature, s.description)
    console.print(table)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    console = Console(stderr=args.json == "-")
    if args.list:
        _list(console)
        return
    try:
        if not args.fleet_file:
            raise ConfigError("--fleet-file is required")
        target = ConformanceTarget(
            host=args.host,
            port=args.port,
            terminals=read_fleet_file(args.fleet_file),
            cards=load_cards(args.cards),
            timeout_s=args.timeout_s,
            drop_timeout_s=args.drop_timeout_s,
            sign_in_variant=args.sign_in_variant,
            transfer_cap_minor=args.transfer_cap_minor,
            pending=frozenset(t.strip() for t in args.pending.split(",") if t.strip()),
        )
        try:
            results = asyncio.run(run_catalogue(target, args.only))
        finally:
            save_atcs()  # the next run's ARQCs must carry higher ATCs
    except (ConfigError, ValueError, OSError) as exc:
        console.print(f"[red]posp-conformance: {exc}[/red]")
        raise SystemExit(2) from None
    console.print(results_table(results))
    if args.json:
        write_json([r.to_json() for r in results], args.json)
    if any(r.status is Status.FAIL for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
