"""``posp risk``: check a ruleset before it goes live, and backtest it.

::

    posp risk validate FILE                      parse, validate and compile; list the rules
    posp risk backtest FILE --from YYYY-MM-DD --to YYYY-MM-DD [--rows ROWS.jsonl]
                                                 replay the journal (or a rows file) against
                                                 FILE; per rule: declined / flagged / shadowed

``posp.cli`` calls :func:`register` with its subcommand group and the common
options parser.  Invariants: a bad file or argument raises ConfigError (exit 2,
the message names the file, line or field); nothing is written anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from posp import reports
from posp.errors import ConfigError
from posp.risk.backtest import BacktestReport, BacktestRow, run_backtest
from posp.risk.inputs import RiskInput, TmsCaps
from posp.risk.ruleset import compile_ruleset, read_ruleset
from posp.store.risk_records import RiskRecord, SqlRiskRecords

if TYPE_CHECKING:
    from posp.cli import Context

EXIT_OK = 0


def register(commands: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add ``risk validate | backtest | explain | flagged`` to ``posp``'s subcommands."""
    group = commands.add_parser("risk", help="risk rules")
    risk = group.add_subparsers(dest="action", required=True, parser_class=type(group))
    validate = risk.add_parser("validate", parents=list(parents), help="check a ruleset file")
    validate.add_argument("file", metavar="FILE")
    validate.set_defaults(handler=validate_cmd)
    backtest = risk.add_parser("backtest", parents=list(parents), help="replay against a ruleset")
    backtest.add_argument("file", metavar="FILE")
    backtest.add_argument("--from", dest="start", required=True, type=_date, metavar="YYYY-MM-DD")
    backtest.add_argument("--to", dest="end", required=True, type=_date, metavar="YYYY-MM-DD")
    backtest.add_argument(
        "--rows", metavar="FILE", help="JSON lines of rows instead of the journal"
    )
    backtest.set_defaults(handler=backtest_cmd)
    explain = risk.add_parser("explain", parents=list(parents), help="why a txn was flagged")
    explain.add_argument("rrn", metavar="RRN")
    explain.set_defaults(handler=explain_cmd)
    flagged = risk.add_parser("flagged", parents=list(parents), help="flagged txns of a day")
    flagged.add_argument("--date", dest="day", required=True, type=_date, metavar="YYYY-MM-DD")
    flagged.set_defaults(handler=flagged_cmd)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from exc


async def validate_cmd(ctx: Context) -> int:
    ruleset = read_ruleset(ctx.args.file)
    compile_ruleset(ruleset)
    view = reports.View(
        f"ruleset {ruleset.version}: {len(ruleset.rules)} rules, valid",
        ("rule", "kind", "enabled", "action", "code", "scope", "txn_types"),
    )
    for rule in ruleset.rules:
        scope = rule.scope.kind.value + (
            f" {','.join(rule.scope.values)}" if rule.scope.values else ""
        )
        view.rows.append(
            {
                "rule": rule.id,
                "kind": rule.kind,
                "enabled": rule.enabled,
                "action": rule.action.value,
                "code": (rule.code.value if rule.code else None),
                "scope": scope,
                "txn_types": ",".join(rule.txn_types),
            }
        )
    reports.render(view, "json" if ctx.as_json else "table", ctx.out)
    return EXIT_OK


async def backtest_cmd(ctx: Context) -> int:
    a = ctx.args
    if a.end < a.start:
        raise ConfigError("--to must not be before --from")
    ruleset = compile_ruleset(read_ruleset(a.file))
    if a.rows:
        report = run_backtest(ruleset, _in_range(read_rows(Path(a.rows)), a.start, a.end))
    else:
        report = run_backtest(ruleset, await _journal(ctx, a.start, a.end))
    _print_report(ctx, report)
    return EXIT_OK


async def _journal(ctx: Context, start: dt.date, end: dt.date) -> list[BacktestRow]:
    from posp.admin import open_admin
    from posp.store.risk_journal import journal_rows
    from posp.store.sql_store import SqlStore

    offset = ctx.settings.network.tz_offset_hours
    async with open_admin(ctx.settings, hsm=False, read_only=True) as admin:
        store = admin.store
        if not isinstance(store, SqlStore):
            raise ConfigError("backtest needs a SQL store (settings store_url)")
        return [row async for row in journal_rows(store, start, end, utc_offset_hours=offset)]


async def explain_cmd(ctx: Context) -> int:
    """Every rule that fired on the transaction with this RRN, with its inputs."""
    rrn = str(ctx.args.rrn)
    if len(rrn) != 12 or not rrn.isdigit():
        raise ConfigError(f"RRN {rrn!r}: 12 digits expected")
    found = await _records(ctx, lambda records: records.by_rrn(rrn))
    if not found:
        raise ConfigError(f"no risk decision recorded for RRN {rrn}")
    _print_records(ctx, f"risk decisions of RRN {rrn}", found)
    return EXIT_OK


async def flagged_cmd(ctx: Context) -> int:
    """The flagged transactions of one local business day (for review)."""
    day: dt.date = ctx.args.day
    found = await _records(ctx, lambda records: records.flagged(day))
    _print_records(ctx, f"flagged on {day.isoformat()}: {len(found)}", found)
    return EXIT_OK


async def _records(
    ctx: Context, query: Callable[[SqlRiskRecords], Awaitable[list[RiskRecord]]]
) -> list[RiskRecord]:
    from posp.admin import open_admin
    from posp.store.sql_store import SqlStore

    async with open_admin(ctx.settings, hsm=False, read_only=True) as admin:
        if not isinstance(admin.store, SqlStore):
            raise ConfigError("risk decisions need a SQL store (settings store_url)")
        return await query(SqlRiskRecords(admin.store))


def _print_records(ctx: Context, title: str, found: list[RiskRecord]) -> None:
    view = reports.View(
        title, ("rrn", "type", "amount", "card", "answer", "version", "rule", "action", "inputs")
    )
    for record in found:
        for decision in record.decisions or [{}]:
            triggered = decision.get("triggered") or {}
            view.rows.append(
                {
                    "rrn": record.rrn,
                    "type": record.txn_type,
                    "amount": record.amount_minor,
                    "card": record.pan_masked,
                    "answer": record.response_code,
                    "version": record.ruleset_version,
                    "rule": decision.get("rule", "-"),
                    "action": decision.get("action", record.outcome),
                    "inputs": " ".join(f"{k}={v}" for k, v in dict(triggered).items()),
                }
            )
    reports.render(view, "json" if ctx.as_json else "table", ctx.out)


def _in_range(rows: Iterator[BacktestRow], start: dt.date, end: dt.date) -> Iterator[BacktestRow]:
    for row in rows:
        if start <= row.inp.local_time.date() <= end:
            yield row


def _print_report(ctx: Context, report: BacktestReport) -> None:
    if ctx.as_json:
        ctx.out.print_json(json.dumps(report.as_dict()))
        return
    title = (
        f"backtest of {report.version}: {report.rows} rows, {report.declined_rows} declined"
        f" ({report.newly_declined} approved before), {report.flagged_rows} flagged,"
        f" {report.rows_per_s:,.0f} rows/s ({report.rows_per_cpu_s:,.0f} per CPU second)"
    )
    view = reports.View(title, ("rule", "kind", "action", "declined", "flagged", "shadowed"))
    for tally in report.by_rule.values():
        view.rows.append(
            {
                "rule": tally.rule_id,
                "kind": tally.kind,
                "action": tally.action,
                "declined": tally.declined,
                "flagged": tally.flagged,
                "shadowed": tally.shadowed,
            }
        )
    reports.render(view, "table", ctx.out)


class _RowModel(BaseModel):
    """One line of a ``--rows`` file: the RiskInput fields plus ``approved``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    txn_type: str = Field(pattern=r"^[a-z_]{1,24}$")
    amount_minor: int = Field(ge=0, le=10**12 - 1)
    card_hash: str = Field(pattern=r"^[0-9a-fA-F]{16,128}$")
    bin: str = Field(default="", pattern=r"^[0-9]{0,11}$")
    terminal_id: str = Field(min_length=1, max_length=8)
    merchant_id: str = Field(min_length=1, max_length=15)
    mcc: str = Field(default="", pattern=r"^[0-9]{0,4}$")
    local_time: dt.datetime
    merchant_group: str = ""
    merchant_region: str = ""
    terminal_region: str = ""
    fallback: bool = False
    tms_purchase_cap_minor: int | None = None
    approved: bool = True


def parse_row(line: str, *, where: str = "row") -> BacktestRow:
    """One JSON line as a BacktestRow; ConfigError naming ``where`` and the field."""
    try:
        model = _RowModel.model_validate_json(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or "line"
        raise ConfigError(f"{where}: {field}: {first.get('msg', 'invalid')}") from None
    data = model.model_dump(exclude={"approved", "tms_purchase_cap_minor"})
    data["local_time"] = model.local_time.replace(tzinfo=None)
    inp = RiskInput(**data, tms_caps=TmsCaps(purchase_minor=model.tms_purchase_cap_minor))
    return BacktestRow(inp, model.approved)


def read_rows(path: Path) -> Iterator[BacktestRow]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the rows file ({type(exc).__name__})") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield parse_row(line, where=f"{path}:{number}")
