"""Operator views: registry listings, batches and the settlement report.

Every view is a :class:`View` — a title, ordered columns and rows of plain
values — built from store records by a pure function, then rendered as a rich
table (people), CSV or JSON (programs).  Amounts stay in minor units in CSV
and JSON (columns named ``*_minor``) and are shown as yuan in tables.

Invariants: no view ever contains key material other than KCVs, nor a PAN;
rendering never changes the data, only its presentation.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from rich.console import Console
from rich.table import Table

from posp.store.api import Merchant, Settlement, Terminal, UploadedRecord

FORMATS: Final = ("table", "csv", "json")
Value = str | int | bool | None


Row = Mapping[str, Value]


@dataclass(frozen=True, slots=True)
class TableColumn:
    """One column of the people-facing table: a header and how to show a row."""

    header: str
    cell: Callable[[Row], str]
    numeric: bool = False


@dataclass(slots=True)
class View:
    """``columns`` are the data (CSV and JSON carry all of them); ``table``, when
    set, is a narrower layout for terminals that combines related columns."""

    title: str
    columns: tuple[str, ...]
    rows: list[dict[str, Value]] = field(default_factory=list)
    table: tuple[TableColumn, ...] = ()
    group_by: str | None = None  # one table per value of this column


def yuan(amount_minor: int) -> str:
    """Minor units (fen) as yuan with two decimals."""
    sign = "-" if amount_minor < 0 else ""
    whole, fen = divmod(abs(amount_minor), 100)
    return f"{sign}{whole:,}.{fen:02d}"


def _cell(column: str, value: Value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column.endswith("_minor") and isinstance(value, int):
        return yuan(value)
    return str(value)


def _plain_column(column: str) -> TableColumn:
    numeric = column.endswith(("_minor", "_count", "records", "mismatches"))
    header = column.removesuffix("_minor").replace("_", " ")
    return TableColumn(header, lambda row: _cell(column, row.get(column)), numeric)


def _field(column: str) -> Callable[[Row], str]:
    return lambda row: _cell(column, row.get(column))


def _count_amount(count: str, amount: str) -> Callable[[Row], str]:
    """``3 / 35.00``: a count and its amount in one cell."""
    return lambda row: f"{_cell(count, row.get(count))} / {_cell(amount, row.get(amount))}"


def render_table(view: View, console: Console) -> None:
    layout = view.table or tuple(_plain_column(c) for c in view.columns)
    groups: dict[str, list[dict[str, Value]]] = {}
    for row in view.rows:
        key = str(row.get(view.group_by)) if view.group_by else ""
        groups.setdefault(key, []).append(row)
    if not groups:
        groups[""] = []
    for key, rows in groups.items():
        label = view.group_by.removesuffix("_id") if view.group_by else ""
        title = f"{view.title}, {label} {key}" if key else view.title
        table = Table(title=title, title_justify="left")
        for column in layout:
            table.add_column(column.header, justify="right" if column.numeric else "left")
        for row in rows:
            table.add_row(*(column.cell(row) for column in layout))
        console.print(table)


def render_csv(view: View) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(view.columns), extrasaction="ignore")
    writer.writeheader()
    for row in view.rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in view.columns})
    return out.getvalue()


def view_rows(view: View) -> list[dict[str, Value]]:
    """The rows with exactly the view's columns, in order."""
    return [{c: row.get(c) for c in view.columns} for row in view.rows]


def render_json(view: View) -> str:
    return json.dumps(view_rows(view), indent=2)


def console_json(console: Console, data: object) -> None:
    """Print any JSON-able value plainly (no markup, no highlighting)."""
    console.out(json.dumps(data, indent=2, default=str), highlight=False)


def render(view: View, fmt: str, console: Console) -> None:
    """Print the view in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "table":
        render_table(view, console)
    elif fmt == "csv":
        console.out(render_csv(view), end="", highlight=False)
    else:
        console.out(render_json(view), highlight=False)


# --- registry ------------------------------------------------------------------


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


MERCHANT_TABLE: Final = (
    TableColumn("merchant id", _field("merchant_id")),
    TableColumn("name", _field("name")),
    TableColumn("MCC", _field("category_code")),
    TableColumn("status", _field("status")),
    TableColumn("created", lambda row: str(row.get("created_at") or "-")[:10]),
)


def merchants_view(merchants: Iterable[Merchant]) -> View:
    columns = ("merchant_id", "name", "category_code", "status", "created_at")
    view = View("Merchants", columns, table=MERCHANT_TABLE)
    for m in merchants:
        view.rows.append(
            {
                "merchant_id": m.merchant_id,
                "name": m.name,
                "category_code": m.category_code,
                "status": m.status,
                "created_at": _iso(m.created_at),
            }
        )
    return view


TERMINAL_COLUMNS: Final = (
    "terminal_id",
    "merchant_id",
    "status",
    "batch",
    "tmk_kcv",
    "signed_in",
    "keys_generated_at",
    "device_serial",
)


def terminal_row(t: Terminal) -> dict[str, Value]:
    return {
        "terminal_id": t.terminal_id,
        "merchant_id": t.merchant_id,
        "status": t.status,
        "batch": t.batch,
        "tmk_kcv": t.tmk_kcv,
        "signed_in": t.tpk_lmk is not None,
        "keys_generated_at": _iso(t.keys_generated_at),
        "device_serial": t.device_serial,
    }


TERMINAL_TABLE: Final = (
    TableColumn("terminal", _field("terminal_id")),
    TableColumn("merchant", _field("merchant_id")),
    TableColumn("status", _field("status")),
    TableColumn("batch", _field("batch")),
    TableColumn("TMK KCV", _field("tmk_kcv")),
    TableColumn("signed in", _field("signed_in")),
    TableColumn("serial", _field("device_serial")),
)


def terminals_view(terminals: Iterable[Terminal]) -> View:
    rows = [terminal_row(t) for t in terminals]
    return View("Terminals", TERMINAL_COLUMNS, rows, table=TERMINAL_TABLE)


# --- batches -------------------------------------------------------------------

BATCH_COLUMNS: Final = (
    "terminal_id",
    "merchant_id",
    "batch",
    "status",
    "txn_count",
    "debit_count",
    "debit_amount_minor",
    "credit_count",
    "credit_amount_minor",
    "settled",
    "balanced",
    "upload_records",
    "upload_mismatches",
)


def _settled_cell(row: Row) -> str:
    if not row.get("settled"):
        return "no"
    return "balanced" if row.get("balanced") else "UNBALANCED"


def _upload_cell(row: Row) -> str:
    records, bad = row.get("upload_records") or 0, row.get("upload_mismatches") or 0
    shown = f"{records}, {bad} bad" if bad else str(records)
    if row.get("upload_complete") is False:
        shown += ", open"  # no 202/207 yet: the batch is still open
    return shown


BATCH_TABLE: Final = (
    TableColumn("terminal", _field("terminal_id")),
    TableColumn("batch", _field("batch")),
    TableColumn("status", _field("status")),
    TableColumn("txns", _field("txn_count"), numeric=True),
    TableColumn("debits", _count_amount("debit_count", "debit_amount_minor"), numeric=True),
    TableColumn("credits", _count_amount("credit_count", "credit_amount_minor"), numeric=True),
    TableColumn("settled", _settled_cell),
    TableColumn("uploaded", _upload_cell, numeric=True),
)


def batches_view(batches: Iterable[Mapping[str, object]]) -> View:
    """``Store.list_batches`` rows, one per terminal and batch."""
    rows = [{c: _plain(b.get(c)) for c in BATCH_COLUMNS} for b in batches]
    return View("Batches", BATCH_COLUMNS, rows, table=BATCH_TABLE)


def _plain(value: object) -> Value:
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


UPLOAD_COLUMNS: Final = ("trace", "card_class", "amount_minor", "matched", "reason")


def uploads_view(terminal_id: str, batch: str, uploads: Iterable[UploadedRecord]) -> View:
    rows: list[dict[str, Value]] = [
        {
            "trace": u.trace,
            "card_class": u.card_class,
            "amount_minor": u.amount_minor,
            "matched": u.matched,
            "reason": u.reason,
        }
        for u in sorted(uploads, key=lambda u: u.trace)
    ]
    return View(f"Batch upload of terminal {terminal_id} batch {batch}", UPLOAD_COLUMNS, rows)


# --- settlement report ------------------------------------------------------------

SETTLEMENT_COLUMNS: Final = (
    "merchant_id",
    "terminal_id",
    "batch",
    "settled_at",
    "debit_count",
    "debit_amount_minor",
    "credit_count",
    "credit_amount_minor",
    "terminal_debit_count",
    "terminal_debit_amount_minor",
    "terminal_credit_count",
    "terminal_credit_amount_minor",
    "domestic_balanced",
    "foreign_balanced",
    "upload_records",
    "upload_mismatches",
    "upload_complete",
)
_SUMMED: Final = tuple(c for c in SETTLEMENT_COLUMNS if c.endswith(("_count", "_minor")))
_SUMMED_ALSO: Final = ("upload_records", "upload_mismatches")


def settlement_row(s: Settlement) -> dict[str, Value]:
    """One settled batch: the switch's totals and the terminal's, both classes added."""
    return {
        "merchant_id": s.merchant_id,
        "terminal_id": s.terminal_id,
        "batch": s.batch,
        "settled_at": _iso(s.settled_at),
        "debit_count": s.domestic.debit_count + s.foreign.debit_count,
        "debit_amount_minor": s.domestic.debit_amount_minor + s.foreign.debit_amount_minor,
        "credit_count": s.domestic.credit_count + s.foreign.credit_count,
        "credit_amount_minor": s.domestic.credit_amount_minor + s.foreign.credit_amount_minor,
        "terminal_debit_count": s.terminal_domestic.debit_count + s.terminal_foreign.debit_count,
        "terminal_debit_amount_minor": s.terminal_domestic.debit_amount_minor
        + s.terminal_foreign.debit_amount_minor,
        "terminal_credit_count": s.terminal_domestic.credit_count + s.terminal_foreign.credit_count,
        "terminal_credit_amount_minor": s.terminal_domestic.credit_amount_minor
        + s.terminal_foreign.credit_amount_minor,
        "domestic_balanced": s.domestic_balanced,
        "foreign_balanced": s.foreign_balanced,
        "upload_records": s.upload_records,
        "upload_mismatches": s.upload_mismatches,
        "upload_complete": s.upload_complete,
    }


def _balanced_cell(row: Row) -> str:
    domestic, foreign = row.get("domestic_balanced"), row.get("foreign_balanced")
    if domestic and foreign:
        return "yes"
    return "NO " + "+".join(name for name, ok in (("dom", domestic), ("for", foreign)) if not ok)


SETTLEMENT_TABLE: Final = (
    TableColumn("terminal", _field("terminal_id")),
    TableColumn("batch", _field("batch")),
    TableColumn("debits", _count_amount("debit_count", "debit_amount_minor"), numeric=True),
    TableColumn("credits", _count_amount("credit_count", "credit_amount_minor"), numeric=True),
    TableColumn("balanced", _balanced_cell),
    TableColumn("uploaded", _upload_cell, numeric=True),
)


def settlement_view(day: dt.date, settlements: Sequence[Settlement]) -> View:
    """Settled batches grouped by merchant, each group followed by a merchant total
    (terminal_id ``*``; balanced only when every batch in it is).  Switch totals
    are the journal's; ``terminal_*`` the terminal's own figures from its 0500."""
    view = View(
        f"Settlement report {day.isoformat()}",
        SETTLEMENT_COLUMNS,
        table=SETTLEMENT_TABLE,
        group_by="merchant_id",
    )
    ordered = sorted(settlements, key=lambda s: (s.merchant_id, s.terminal_id, s.batch))
    by_merchant: dict[str, list[dict[str, Value]]] = {}
    for s in ordered:
        by_merchant.setdefault(s.merchant_id, []).append(settlement_row(s))
    for merchant_id, rows in by_merchant.items():
        view.rows.extend(rows)
        view.rows.append(merchant_total(merchant_id, rows))
    return view


def merchant_total(merchant_id: str, rows: Sequence[Mapping[str, Value]]) -> dict[str, Value]:
    total: dict[str, Value] = {c: None for c in SETTLEMENT_COLUMNS}
    total.update(merchant_id=merchant_id, terminal_id="*", batch=f"{len(rows)} total")
    for column in (*_SUMMED, *_SUMMED_ALSO):
        total[column] = sum(int(r.get(column) or 0) for r in rows)
    for column in ("domestic_balanced", "foreign_balanced", "upload_complete"):
        total[column] = all(bool(r.get(column)) for r in rows)
    return total
