"""``posp ic``: the operator's CAPK and AID parameter sets (terminal-link §8), and
the management part of ``posp terminal show``.

::

    posp ic capk add --rid R --index I --modulus M --exponent E --expiry YYMMDD --hash H
    posp ic capk list | remove --rid R --index I | import FILE
    posp ic aid add --aid A [--floor-limit-minor N ...] | list | remove --aid A | import FILE

Invariants: every entry is validated (``posp.tms.ic``) before anything is
written; bad input exits 2 naming the field (``--rid``, ``FILE entry 3: hash``);
an import replaces the whole set only when every entry validated; each change
prints the set's new version.  The modulus is never printed in full.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from posp.admin import AdminError
from posp.errors import DecodeError
from posp.iso8583.tms_identity import TerminalIdentity
from posp.store.ic import SqlIcStore
from posp.tms.cli import _emit, _usage_errors, open_tms
from posp.tms.ic import AID_KIND, CAPK_KIND, Aid, Capk, IcInputError, load_entries, validation_field
from posp.tms.params import Scope, effective

if TYPE_CHECKING:
    from posp.cli import Context

_CAPK_FLAGS = ("rid", "index", "modulus", "exponent", "expiry", "hash")
_AID_FLAGS: dict[str, Any] = {
    "aid": str,
    "app_version": str,
    "tac_default": str,
    "tac_denial": str,
    "tac_online": str,
    "floor_limit_minor": int,
    "threshold_minor": int,
    "max_target_pct": int,
    "target_pct": int,
    "ec_limit_minor": int,
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _capk_row(c: Capk) -> dict[str, Any]:
    return {
        "rid": c.rid,
        "index": c.index,
        "modulus bytes": len(c.modulus) // 2,
        "exponent": c.exponent,
        "expiry": c.expiry,
        "hash": c.hash,
    }


def _aid_row(a: Aid) -> dict[str, Any]:
    return a.model_dump()


def _model(kind: str, args: argparse.Namespace) -> Capk | Aid:
    flags = _CAPK_FLAGS if kind == CAPK_KIND else tuple(_AID_FLAGS)
    given = {f: getattr(args, f) for f in flags if getattr(args, f) is not None}
    if kind == AID_KIND:
        for flag in ("exact_select", "offline_pin"):
            if getattr(args, flag):
                given["partial_select" if flag == "exact_select" else "online_pin"] = False
    try:
        return (Capk if kind == CAPK_KIND else Aid).model_validate(given)
    except ValidationError as exc:
        field, reason = validation_field(exc)
        name = _flag(field) if field in flags else field
        raise AdminError(name, reason) from None


async def ic_cmd(ctx: Context) -> int:
    a, kind = ctx.args, ctx.args.ic_kind
    async with open_tms(ctx) as tms:
        store = SqlIcStore(tms.sql_store)
        if a.action == "add":
            entry = _model(kind, a)
            version = await (
                store.put_capk(entry) if isinstance(entry, Capk) else store.put_aid(entry)
            )
            return _emit(ctx, f"{kind} set version {version}", [_row(entry)])
        if a.action == "remove":
            removed = await (
                store.remove_capk(a.rid, a.index) if kind == CAPK_KIND else store.remove_aid(a.aid)
            )
            if removed is None:
                what = f"{a.rid}/{a.index}" if kind == CAPK_KIND else a.aid
                raise AdminError(_flag("rid" if kind == CAPK_KIND else "aid"), f"no {kind} {what}")
            return _emit(ctx, f"{kind} removed", [{"version": removed}])
        if a.action == "import":
            try:
                entries = load_entries(Path(a.file), kind)
            except IcInputError as exc:
                raise AdminError(exc.field, exc.reason) from None
            version = await store.replace(kind, entries)
            return _emit(ctx, f"{kind} set version {version}", [_row(e) for e in entries])
        found: list[Capk] | list[Aid] = await (store.capks() if kind == CAPK_KIND else store.aids())
        version = (await store.versions())[kind]
        return _emit(ctx, f"{kind} set version {version}", [_row(e) for e in found])


def _row(entry: Capk | Aid) -> dict[str, Any]:
    return _capk_row(entry) if isinstance(entry, Capk) else _aid_row(entry)


def _identity_rows(f59: str | None) -> list[dict[str, Any]]:
    if not f59:
        return []
    try:
        identity = TerminalIdentity.parse(f59)
    except DecodeError:
        return [{"item": "identity", "value": "(unreadable)"}]
    names = ("device_type", "hardware_serial", "app_version", "iccid", "location")
    return [
        {"item": f"identity {n}", "value": getattr(identity, n)}
        for n in names
        if getattr(identity, n) is not None
    ]


async def management_rows(ctx: Context, terminal_id: str) -> list[dict[str, Any]]:
    """The management part of ``posp terminal show``: versions held and current,
    application version, last status and identity, as (item, value) rows."""
    async with open_tms(ctx) as tms:
        row = await tms.management_view(terminal_id)
        known = row.known
        current = effective(row.group_set, row.own_set, known.group_version if known else 0)
        versions = await SqlIcStore(tms.sql_store).versions()
        own_set = await tms.get_param_set(Scope.TERMINAL, terminal_id)
    rows: list[dict[str, Any]] = [
        {"item": "group", "value": known.group if known else "default"},
        {"item": "parameters held / current", "value": _pair(known, "param", current.version)},
        {"item": "CAPK held / current", "value": _pair(known, "capk", versions[CAPK_KIND])},
        {"item": "AID held / current", "value": _pair(known, "aid", versions[AID_KIND])},
        {"item": "own parameter set", "value": own_set.version if own_set else None},
        {"item": "application version", "value": known.app_version if known else None},
        {"item": "update waiting", "value": row.offer},
        {"item": "last install", "value": known.install_result if known else None},
        {"item": "last status", "value": _status_text(known.status if known else None)},
        *_identity_rows(known.identity if known else None),
    ]
    return rows


def _pair(known: Any, kind: str, current: int) -> str:
    held = getattr(known, f"held_{kind}_version", None) if known else None
    return f"{'-' if held is None else held} / {current}"


def _status_text(status: dict[str, str] | None) -> str | None:
    return None if not status else ", ".join(f"{k}={v}" for k, v in sorted(status.items()))


def _leaf(
    actions: Any, common: argparse.ArgumentParser, name: str, help: str
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = actions.add_parser(name, parents=[common], help=help)
    p.set_defaults(handler=_usage_errors(ic_cmd), action=name)
    return p


def register(commands: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    """Add ``posp ic capk|aid ...`` to ``posp``'s sub-commands."""
    parser_class = type(common)
    ic = commands.add_parser("ic", help="IC parameters: CA public keys and AIDs")
    kinds = ic.add_subparsers(dest="ic_kind", required=True, parser_class=parser_class)
    for kind in (CAPK_KIND, AID_KIND):
        actions = kinds.add_parser(kind, help=f"{kind.upper()} parameter set").add_subparsers(
            dest="action", required=True, parser_class=parser_class
        )

        add = _leaf(actions, common, "add", f"add or replace one {kind}")
        remove = _leaf(actions, common, "remove", f"remove one {kind}")
        _leaf(actions, common, "list", f"the {kind} set and its version")
        _leaf(actions, common, "import", f"replace the {kind} set from a JSON array").add_argument(
            "file", metavar="FILE"
        )
        if kind == CAPK_KIND:
            for flag in _CAPK_FLAGS:
                add.add_argument(_flag(flag), dest=flag)
            remove.add_argument("--rid", required=True)
            remove.add_argument("--index", required=True)
        else:
            for flag, type_ in _AID_FLAGS.items():
                add.add_argument(_flag(flag), dest=flag, type=type_)
            add.add_argument("--exact-select", action="store_true", help="DF01 = 01")
            add.add_argument("--offline-pin", action="store_true", help="DF18 = 00")
            remove.add_argument("--aid", required=True)
