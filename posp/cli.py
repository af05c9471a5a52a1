"""``posp``: the switch's command line.

::

    posp serve [--workers N]                     run the switch until SIGINT/SIGTERM
                                                 (N processes on one port: posp.workers)
    posp up [--no-demo] [--demo-seconds S] [--exit-after-demo]
                                                 HSM sim + issuer sim + switch + demo fleet
                                                 (lab: posp.lab.stack)
    posp merchant add --id --name --mcc | list | show ID | disable ID | enable ID
    posp terminal add --id --merchant [--tmk HEX] [--serial S] | list [--merchant M]
                  | show ID | disable ID | enable ID | rotate-tmk ID [--tmk HEX]
                  | provision-fleet --count N --merchant M --prefix P --fleet-file F
                    [--rekey-existing]               (lab: posp.lab.fleet)
    posp batch list [--terminal T] | show TERMINAL BATCH | tc-report TERMINAL BATCH
    posp settlement report --date YYYY-MM-DD [--format table|csv|json]
                                                 (the switch's local business date,
                                                 UTC + network.tz_offset_hours)

Every command takes ``--config FILE`` (TOML, see posp.settings), ``--data-dir DIR``
and ``--json``, before the command or after it (``serve`` and ``up`` refuse
``--json``: they print logs); ``--version`` prints the version.

The lab commands (``up``, ``terminal provision-fleet``) import the lab package
(``posp.lab``) inside their handlers: no other command loads the simulators.

Invariants: :func:`main` returns the exit status and never lets a traceback
reach the operator: 0 done, 2 bad argument or configuration (the message names
the argument or setting), 1 the work failed (store or HSM unavailable, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from posp import reports
from posp.admin import AdminError, TmkResult, open_admin
from posp.errors import ConfigError, PospError
from posp.loop import raise_open_files_limit
from posp.loop import run as run_loop
from posp.risk import cli as risk_cli
from posp.settings import Settings, load_settings
from posp.version import add_version_flag

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass(slots=True)
class Context:
    args: argparse.Namespace
    settings: Settings
    out: Console

    @property
    def as_json(self) -> bool:
        return bool(getattr(self.args, "json", False))


Handler = Callable[[Context], Coroutine[Any, Any, int]]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() owns every exit status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise AdminError(self.prog, message)


#: Commands that only read: they never create a data directory or a store file.
READ_ONLY_ACTIONS = frozenset({"list", "show", "report"})


# --- merchant and terminal commands ----------------------------------------------------


def _show(ctx: Context, view: reports.View) -> None:
    reports.render(view, "json" if ctx.as_json else "table", ctx.out)


async def merchant_cmd(ctx: Context) -> int:
    a = ctx.args
    read_only = a.action in READ_ONLY_ACTIONS
    async with open_admin(ctx.settings, hsm=False, read_only=read_only) as admin:
        if a.action == "add":
            merchants = [await admin.add_merchant(a.id, a.name, a.mcc)]
        elif a.action == "list":
            merchants = await admin.list_merchants()
        elif a.action == "show":
            merchants = [await admin.merchant(a.merchant_id)]
        else:
            status = "disabled" if a.action == "disable" else "active"
            merchants = [await admin.set_merchant_status(a.merchant_id, status)]
    _show(ctx, reports.merchants_view(merchants))
    return EXIT_OK


async def terminal_cmd(ctx: Context) -> int:
    a = ctx.args
    if a.action == "provision-fleet":
        return await provision_fleet_cmd(ctx)
    if a.action in ("reactivate", "unbind"):
        return await terminal_lifecycle_cmd(ctx)
    needs_hsm = a.action in ("add", "rotate-tmk")
    read_only = a.action in READ_ONLY_ACTIONS
    async with open_admin(ctx.settings, hsm=needs_hsm, read_only=read_only) as admin:
        if a.action == "add":
            result = await admin.add_terminal(a.id, a.merchant, tmk_hex=a.tmk, serial=a.serial)
            return _print_tmk_result(ctx, result)
        if a.action == "rotate-tmk":
            return _print_tmk_result(ctx, await admin.rotate_tmk(a.terminal_id, a.tmk))
        if a.action == "list":
            terminals = await admin.list_terminals(a.merchant)
        elif a.action == "show":
            terminals = [await admin.terminal(a.terminal_id)]
        else:
            status = "disabled" if a.action == "disable" else "active"
            terminals = [await admin.set_terminal_status(a.terminal_id, status)]
    view = reports.terminals_view(terminals)
    if a.action != "show":
        _show(ctx, view)
        return EXIT_OK
    from posp.tms.ic_cli import management_rows  # parameters, IC sets, software, identity

    managed = await management_rows(ctx, a.terminal_id)
    if ctx.as_json:
        row = {**reports.view_rows(view)[0], "management": {r["item"]: r["value"] for r in managed}}
        reports.console_json(ctx.out, [row])
    else:
        _show(ctx, view)
        _show(ctx, reports.View("Terminal management", ("item", "value"), managed))
    return EXIT_OK


async def terminal_lifecycle_cmd(ctx: Context) -> int:
    """``terminal reactivate|unbind ID``: a dormant terminal transacts again / the
    device binding is forgotten and the freeze lifted (posp.pipeline.lifecycle)."""
    from posp.pipeline.lifecycle import operator_action
    from posp.store.risk_records import SqlRiskRecords
    from posp.store.sql_store import SqlStore

    a = ctx.args
    async with open_admin(ctx.settings, hsm=False) as admin:
        terminal = await admin.terminal(a.terminal_id)  # an unknown id is an error
        if not isinstance(admin.store, SqlStore):
            raise ConfigError("terminal lifecycle needs a SQL store (settings store_url)")
        zone = dt.timezone(dt.timedelta(hours=ctx.settings.network.tz_offset_hours))
        today = dt.datetime.now(zone).date()
        records = SqlRiskRecords(admin.store)
        event = await operator_action(records, terminal.terminal_id, a.action, today)
    if ctx.as_json:
        reports.console_json(ctx.out, {"terminal_id": terminal.terminal_id, "event": event})
    else:
        ctx.out.print(f"terminal {terminal.terminal_id}: {event}", highlight=False)
    return EXIT_OK


def _print_tmk_result(ctx: Context, result: TmkResult) -> int:
    view = reports.terminals_view([result.terminal])
    c = result.components
    if ctx.as_json:
        row: dict[str, object] = dict(view.rows[0])
        if c is not None:
            row["components"] = [
                {"component": c.component_1, "kcv": c.component_1_kcv},
                {"component": c.component_2, "kcv": c.component_2_kcv},
            ]
        reports.console_json(ctx.out, row)
        return EXIT_OK
    reports.render_table(view, ctx.out)
    if c is not None:
        ctx.out.print(
            "[bold]New TMK, shown ONCE:[/bold] give each component to a different custodian "
            "and inject both into the terminal."
        )
        ctx.out.print(f"  component 1  {c.component_1}  KCV {c.component_1_kcv}", highlight=False)
        ctx.out.print(f"  component 2  {c.component_2}  KCV {c.component_2_kcv}", highlight=False)
    ctx.out.print(f"  TMK KCV      {result.tmk_kcv}", highlight=False)
    return EXIT_OK


async def provision_fleet_cmd(ctx: Context) -> int:
    from posp.lab.fleet import check_fleet_file, fleet_ids, provision_fleet

    a = ctx.args
    fleet_file = Path(a.fleet_file)
    fleet_ids(a.count, a.prefix)  # bad arguments answer before the store is opened
    check_fleet_file(fleet_file)
    async with open_admin(ctx.settings, hsm=True) as admin:
        result = await provision_fleet(
            admin,
            count=a.count,
            merchant_id=a.merchant,
            prefix=a.prefix,
            fleet_file=fleet_file,
            rekey_existing=a.rekey_existing,
        )
    summary = {
        "fleet_file": str(result.fleet_file),
        "merchant_created": result.merchant_created,
        "created": len(result.created),
        "kept": len(result.skipped),
    }
    if ctx.as_json:
        reports.console_json(ctx.out, summary)
        return EXIT_OK
    ctx.out.print(
        f"Fleet file {result.fleet_file}: {len(result.created)} terminals keyed, "
        f"{len(result.skipped)} kept" + (", merchant created" if result.merchant_created else "")
    )
    ctx.out.print(
        "[yellow]LAB USE ONLY:[/yellow] the fleet file holds CLEAR TMKs for simulated terminals."
    )
    return EXIT_OK


# --- batches and settlement ------------------------------------------------------------


async def batch_cmd(ctx: Context) -> int:
    a = ctx.args
    async with open_admin(ctx.settings, hsm=False, read_only=True) as admin:
        store = admin.store
        if a.action == "list":
            views = [reports.batches_view(await store.list_batches(a.terminal))]
        else:
            rows = [b for b in await store.list_batches(a.terminal_id) if b.get("batch") == a.batch]
            if not rows:
                raise AdminError("BATCH", f"no batch {a.batch} for terminal {a.terminal_id}")
            uploads = await store.list_uploads(a.terminal_id, a.batch)
            views = [
                reports.batches_view(rows),
                reports.uploads_view(a.terminal_id, a.batch, uploads),
            ]
    if ctx.as_json and len(views) == 1:
        reports.render(views[0], "json", ctx.out)
    elif ctx.as_json:  # show: {"batch": {...}, "uploads": [...]}
        batch_row, uploads_rows = (reports.view_rows(v) for v in views)
        reports.console_json(ctx.out, {"batch": batch_row[0], "uploads": uploads_rows})
    else:
        for view in views:
            reports.render_table(view, ctx.out)
    return EXIT_OK


async def tc_report_cmd(ctx: Context) -> int:
    """``posp batch tc-report TERMINAL BATCH``: approved chip transactions without a TC
    (missing) and TCs without one (unexpected), terminal-link §8."""
    from posp.pipeline.chipadvice import tc_report

    a = ctx.args
    async with open_admin(ctx.settings, hsm=False) as admin:
        report = await tc_report(admin.store, a.terminal_id, a.batch)
    problems = [(t, "missing TC") for t in report.missing]
    problems += [(t, "unexpected TC") for t in report.unexpected]
    rows: list[dict[str, reports.Value]] = [{"trace": t, "problem": p} for t, p in problems]
    title = (
        f"TCs of terminal {a.terminal_id} batch {a.batch}: {report.chip_approved} approved"
        f" chip transactions, {report.tcs} TCs, {report.fallbacks} allowed fallbacks"
    )
    view = reports.View(title, ("trace", "problem"), rows)
    reports.render(view, "json" if ctx.as_json else "table", ctx.out)
    return EXIT_OK


async def settlement_cmd(ctx: Context) -> int:
    a = ctx.args
    try:
        day = dt.date.fromisoformat(a.date)
    except ValueError:
        raise AdminError("--date", "a date is YYYY-MM-DD") from None
    async with open_admin(ctx.settings, hsm=False, read_only=True) as admin:
        settlements = await admin.store.list_settlements(
            date=day, utc_offset_hours=ctx.settings.network.tz_offset_hours
        )
    fmt = "json" if ctx.as_json else a.format
    reports.render(reports.settlement_view(day, settlements), fmt, ctx.out)
    return EXIT_OK


# --- serve and up ------------------------------------------------------------------------


def _refuse_json(ctx: Context, command: str) -> None:
    if ctx.as_json:
        raise AdminError(
            "--json", f"{command} prints logs, not a listing: set log.format = json for JSON logs"
        )


async def serve_cmd(ctx: Context) -> int:
    from posp.serve import serve
    from posp.workers import check_workers, run_workers

    _refuse_json(ctx, "serve")
    workers = ctx.args.workers
    check_workers(ctx.settings, workers)
    if workers > 1:
        child_args: list[str] = []
        if ctx.args.config:
            child_args += ["--config", ctx.args.config]
        if ctx.args.data_dir:
            child_args += ["--data-dir", ctx.args.data_dir]
        return await run_workers(ctx.settings, workers, child_args, ctx.out)
    raise_open_files_limit(ctx.settings.limits.max_connections)
    await serve(ctx.settings, ctx.out)
    return EXIT_OK


async def up_cmd(ctx: Context) -> int:
    from posp.lab.stack import StackOptions, up

    _refuse_json(ctx, "up")
    a = ctx.args
    if a.demo_seconds <= 0:
        raise AdminError("--demo-seconds", "must be positive")
    if not 1 <= a.demo_terminals <= 1000:
        raise AdminError("--demo-terminals", "between 1 and 1000")
    for name, port in (("--hsm-port", a.hsm_port), ("--issuer-port", a.issuer_port)):
        if not 0 <= port <= 65535:
            raise AdminError(name, "a TCP port is 0 to 65535 (0 = any free port)")
    raise_open_files_limit(ctx.settings.limits.max_connections)  # the demo fits the headroom
    options = StackOptions(
        demo=not a.no_demo,
        demo_seconds=a.demo_seconds,
        demo_terminals=a.demo_terminals,
        exit_after_demo=a.exit_after_demo,
        hsm_port=a.hsm_port,
        issuer_port=a.issuer_port,
    )
    return await up(ctx.settings, ctx.out, options)


# --- parser --------------------------------------------------------------------------------


def _global_options(*, on_leaf: bool) -> _Parser:
    """--config, --data-dir, --json: accepted before the command and after the leaf.
    On a leaf they default to SUPPRESS, so a value given before the command is not
    overwritten by the leaf's default."""
    options = _Parser(add_help=False)
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if on_leaf else {}
    options.add_argument(
        "--config", metavar="FILE", help="TOML settings file (or POSP_CONFIG)", **default
    )
    options.add_argument(
        "--data-dir", metavar="DIR", help="data directory (settings data_dir)", **default
    )
    options.add_argument(
        "--json", action="store_true", help="print JSON instead of tables", **default
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    common = _global_options(on_leaf=True)
    parser = _Parser(
        prog="posp", description="posp acquirer switch", parents=[_global_options(on_leaf=False)]
    )
    add_version_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def leaf(
        group: argparse._SubParsersAction[_Parser],
        name: str,
        handler: Handler,
        help: str | None = None,
    ) -> _Parser:
        p = group.add_parser(name, parents=[common], help=help)
        p.set_defaults(handler=handler, action=name)
        return p

    serve = leaf(commands, "serve", serve_cmd, help="run the switch until interrupted")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N switch processes on one terminal port (node ids node_id.., metrics ports"
        " metrics_port..; Linux)",
    )
    up = leaf(commands, "up", up_cmd, help="run HSM sim, issuer sim, switch and a demo")
    up.add_argument("--no-demo", action="store_true", help="skip the demo fleet run")
    up.add_argument("--demo-seconds", type=float, default=5.0, metavar="S")
    up.add_argument("--demo-terminals", type=int, default=5, metavar="N")
    up.add_argument("--exit-after-demo", action="store_true", help="stop after the demo")
    up.add_argument("--verbose", action="store_true", help="log every request (info level)")
    up.add_argument("--hsm-port", type=int, default=1500, help="HSM simulator port (1500)")
    up.add_argument("--issuer-port", type=int, default=9583, help="issuer simulator port")

    merchant = commands.add_parser("merchant", help="merchants").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    add = leaf(merchant, "add", merchant_cmd)
    add.add_argument("--id", required=True, help="merchant id, 15 characters")
    add.add_argument("--name", required=True)
    add.add_argument("--mcc", required=True, help="merchant category code, 4 digits")
    leaf(merchant, "list", merchant_cmd)
    for action in ("show", "disable", "enable"):
        leaf(merchant, action, merchant_cmd).add_argument("merchant_id", metavar="ID")

    terminal = commands.add_parser("terminal", help="terminals").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    add = leaf(terminal, "add", terminal_cmd)
    add.add_argument("--id", required=True, help="terminal id, 8 characters")
    add.add_argument("--merchant", required=True, help="merchant id")
    add.add_argument("--tmk", help="known clear TMK (32 hex); default: generate components")
    add.add_argument("--serial", help="device serial the terminal sends at sign-in")
    leaf(terminal, "list", terminal_cmd).add_argument("--merchant", help="only this merchant")
    for action in ("show", "disable", "enable", "reactivate", "unbind"):
        leaf(terminal, action, terminal_cmd).add_argument("terminal_id", metavar="ID")
    rotate = leaf(terminal, "rotate-tmk", terminal_cmd)
    rotate.add_argument("terminal_id", metavar="ID")
    rotate.add_argument("--tmk", help="known clear TMK (32 hex); default: generate components")
    fleet = leaf(terminal, "provision-fleet", terminal_cmd, help="simulated terminals (lab)")
    fleet.add_argument("--count", type=int, required=True)
    fleet.add_argument("--merchant", required=True)
    fleet.add_argument("--prefix", default="1000", help="terminal id prefix (digits)")
    fleet.add_argument(
        "--fleet-file", required=True, help="fleet file to write (JSON; its directory must exist)"
    )
    fleet.add_argument(
        "--rekey-existing",
        action="store_true",
        help="give existing terminals whose TMK the fleet file lacks a new TMK (else refuse)",
    )

    batch = commands.add_parser("batch", help="batches").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    leaf(batch, "list", batch_cmd).add_argument("--terminal", help="only this terminal")
    show = leaf(batch, "show", batch_cmd)
    show.add_argument("terminal_id", metavar="TERMINAL")
    show.add_argument("batch", metavar="BATCH")
    tcs = leaf(batch, "tc-report", tc_report_cmd)
    tcs.add_argument("terminal_id", metavar="TERMINAL")
    tcs.add_argument("batch", metavar="BATCH")

    settlement = commands.add_parser("settlement", help="settlement").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    report = leaf(settlement, "report", settlement_cmd)
    report.add_argument(
        "--date", required=True, help="YYYY-MM-DD, local business date (network.tz_offset_hours)"
    )
    report.add_argument("--format", choices=reports.FORMATS, default="table")
    from posp.tms.cli import register as register_tms
    from posp.tms.ic_cli import register as register_ic

    register_tms(commands, common)
    register_ic(commands, common)
    risk_cli.register(commands, [common])
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    return load_settings(args.config, **overrides)


def _configure_logging(args: argparse.Namespace, settings: Settings) -> None:
    """``serve`` logs at the configured level; one-shot commands and ``up`` (unless
    ``--verbose``) only warnings and worse, so their tables stay readable."""
    from posp.log import configure_logging

    verbose = args.command == "serve" or bool(getattr(args, "verbose", False))
    level = settings.log.level if verbose else "warning"
    configure_logging(settings.log.format, level)


def main(argv: Sequence[str] | None = None, *, out: Console | None = None) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    err = Console(stderr=True, highlight=False)
    try:
        args = build_parser().parse_args(list(argv) if argv is not None else None)
        if args.command == "serve" and threading.current_thread() is threading.main_thread():
            # SIGHUP means "reload the rules" to a switch: from here on one (e.g.
            # forwarded by a --workers supervisor) is remembered, never fatal.
            from posp.serve import remember_early_hangup

            signal.signal(signal.SIGHUP, remember_early_hangup)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # see posp.workers
        settings = _settings(args)
        _configure_logging(args, settings)
        ctx = Context(args, settings, out or Console(highlight=False))
        handler: Handler = args.handler
        supervisor = getattr(args, "workers", 1) > 1
        return run_loop(handler(ctx), server=args.command in ("serve", "up"), stock=supervisor)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except (AdminError, ConfigError) as exc:
        err.print(f"posp: error: {exc}", markup=False)
        return EXIT_USAGE
    except PospError as exc:
        err.print(f"posp: failed: {type(exc).__name__}: {exc}", markup=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        err.print(f"posp: failed: {exc}", markup=False)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
