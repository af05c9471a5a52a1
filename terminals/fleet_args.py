"""``posp-fleet``'s command line: options, their checks, and the slice of a run
one of several fleet processes takes (``--processes``).

Invariants: every number is checked where it is parsed (argparse then exits 2
with a message naming the option); load shapes and thresholds are parsed by
their own modules; ``--concurrency`` above the fleet size is refused, never
silently lowered; a slice ``I/N`` takes terminals ``[I*n/N, (I+1)*n/N)`` — the
slices are disjoint and cover the fleet — and an N-th of the load.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from posp.version import add_version_flag
from terminals.fleet_config import FleetConfig, check_concurrency
from terminals.loadshape import LoadShape, parse_ramp, parse_steps
from terminals.mix import DEFAULT_MIX
from terminals.thresholds import Threshold, parse_fail_on
from terminals.txn import SIGN_IN_VARIANTS

T = TypeVar("T")


def _checked(
    convert: Callable[[str], T], test: Callable[[T], bool], rule: str
) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not test(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {rule}")
        return value

    parse.__name__ = convert.__name__  # argparse names the type in its messages
    return parse


positive_float = _checked(float, lambda v: v > 0, "greater than 0")
non_negative_float = _checked(float, lambda v: v >= 0, "0 or more")
positive_int = _checked(int, lambda v: v >= 1, "1 or more")
ratio = _checked(float, lambda v: 0.0 <= v <= 1.0, "between 0 and 1")
port_number = _checked(int, lambda v: 0 <= v <= 65535, "a port number (0-65535)")


def parsed_by(parse: Callable[[str], T]) -> Callable[[str], T]:
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def slice_spec(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N with 0 <= I < N")
    return int(index), int(count)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="posp-fleet",
        description="Drive a switch with a fleet of simulated terminals"
        " (`posp-fleet merge A.json B.json ...` combines reports).",
    )
    add_version_flag(p)
    p.add_argument("--fleet-file", required=True, help="terminal ids, merchant ids and TMKs (JSON)")
    p.add_argument("--terminals", type=positive_int, help="use only the first N terminals")
    p.add_argument("--cards", help="demo card file (default: issuer_sim's DEMO_CARDS)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=5800)
    loop = p.add_mutually_exclusive_group()
    loop.add_argument("--rate", type=positive_float, help="open loop: transactions per second")
    loop.add_argument(
        "--ramp",
        type=parsed_by(parse_ramp),
        metavar="RATE1:RATE2:SECONDS",
        help="open loop: the rate goes from RATE1 to RATE2 over SECONDS (reported in tenths)",
    )
    loop.add_argument(
        "--steps",
        type=parsed_by(parse_steps),
        metavar="RATExSECONDS,...",
        help="open loop: e.g. 500x30,1000x30,1500x30 (reported per step)",
    )
    loop.add_argument(
        "--concurrency", type=positive_int, help="closed loop: requests in flight (<= terminals)"
    )
    p.add_argument("--duration", type=positive_float, help="seconds of load (default 10)")
    p.add_argument("--count", type=positive_int, help="number of transactions to start")
    p.add_argument("--mix", default=DEFAULT_MIX, help=f"transaction weights ({DEFAULT_MIX})")
    p.add_argument("--pin-ratio", type=ratio, default=0.5, help="share of PIN transactions")
    p.add_argument("--ic-ratio", type=ratio, default=0.3, help="share of IC (chip) reads")
    p.add_argument("--settle-every", type=positive_float, metavar="S", help="settle every S s")
    p.add_argument("--long-connections", action="store_true", help="one connection per terminal")
    p.add_argument("--sign-in-variant", choices=SIGN_IN_VARIANTS, default="003")
    p.add_argument("--timeout-s", type=positive_float, default=10.0, help="response timeout")
    p.add_argument("--ramp-up", type=non_negative_float, default=0.0, metavar="S",
                   help="spread sign-ins over S s")  # fmt: skip
    p.add_argument(
        "--hold",
        type=positive_float,
        metavar="S",
        help="with --long-connections: hold every connection idle S s, count drops, echo each",
    )
    p.add_argument("--seed", type=int, help="random seed for a reproducible mix")
    p.add_argument(
        "--fail-on",
        type=parsed_by(parse_fail_on),
        action="append",
        default=[],
        metavar="CONDITIONS",
        help="exit 1 when e.g. 'error_rate>1%%,p99>250ms,approval_rate<95%%' holds",
    )
    p.add_argument("--json", metavar="FILE", help="write the report as JSON ('-' = stdout)")
    p.add_argument("--series", metavar="FILE", help="write a per-second series (CSV)")
    p.add_argument("--metrics-port", type=port_number, help="serve Prometheus metrics")
    p.add_argument(
        "--processes", type=positive_int, default=1, help="run N fleet processes and merge"
    )
    p.add_argument("--slice", type=slice_spec, help=argparse.SUPPRESS)  # one of --processes
    p.add_argument("--quiet", action="store_true", help="no live progress")
    software = p.add_argument_group("software rollouts (terminal-link §10)")
    software.add_argument("--tms-url", help="TMS endpoint (posp tms serve): terminals update")
    software.add_argument("--tms-root", type=Path, help="root.json the terminals trust")
    software.add_argument("--model", default="P8", help="terminal model the packages target")
    software.add_argument("--acquirer-id", default="", help="acquirer id the terminals report")
    software.add_argument("--app-version", default="V1.0", help="version the terminals start on")
    software.add_argument("--software-dir", type=Path, help="updaters' work dir (default: temp)")
    return p


def thresholds_of(args: argparse.Namespace) -> tuple[Threshold, ...]:
    return tuple(t for group in args.fail_on for t in group)


def shape_of(args: argparse.Namespace) -> LoadShape | None:
    shape: LoadShape | None = args.ramp or args.steps
    return shape


def usage_errors(args: argparse.Namespace, fleet_size: int) -> list[str]:
    """What is wrong with this combination of options (each names its option)."""
    errors = []
    if args.hold is not None and not args.long_connections:
        errors.append("--hold needs --long-connections")
    if shape_of(args) is not None and args.duration is not None:
        errors.append("--duration conflicts with --ramp/--steps: the shape sets the length")
    if args.concurrency is not None:
        try:
            check_concurrency(args.concurrency, fleet_size)
        except ValueError as exc:
            errors.append(str(exc))
    if args.processes > fleet_size:
        errors.append(f"--processes {args.processes} exceeds the fleet's {fleet_size} terminals")
    if (args.tms_url is None) != (args.tms_root is None):
        errors.append("--tms-url and --tms-root go together (the endpoint and the root to trust)")
    if args.processes > 1 and args.concurrency is not None and args.concurrency < args.processes:
        errors.append(f"--concurrency {args.concurrency} is below --processes {args.processes}")
    return errors


def _share(total: int, index: int, parts: int) -> int:
    return total * (index + 1) // parts - total * index // parts


def sliced(config: FleetConfig, index: int, parts: int) -> FleetConfig:
    """Process ``index`` of ``parts``: its terminals and its share of the load."""
    n = len(config.terminals)
    shape = config.shape.scaled(1 / parts) if config.shape is not None else None
    return replace(
        config,
        terminals=config.terminals[n * index // parts : n * (index + 1) // parts],
        rate=None if config.rate is None else config.rate / parts,
        shape=shape,
        concurrency=None
        if config.concurrency is None
        else _share(config.concurrency, index, parts),
        count=None if config.count is None else max(_share(config.count, index, parts), 1),
        seed=None if config.seed is None else config.seed + index,
        tick_phase=index / parts,
    )
