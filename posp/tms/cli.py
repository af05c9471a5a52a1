"""``posp tms``: the operator's terminal-management commands.

::

    posp tms keys init [--key-type ed25519|ecdsa-p256] [--root-keys N] [--root-threshold T]
                       [--targets-keys N] [--targets-threshold T]
    posp tms keys list | rotate ROLE [--key-type K] | revoke KEYID
    posp tms publish PACKAGE --version V --model M [--acquirer A] [--min-hardware H]
                     [--counter N]
    posp tms refresh [--snapshot]                re-sign timestamp (and snapshot)
    posp tms serve [--host H] [--port P]         metadata, packages, offers over HTTP
    posp tms params set (--group G | --terminal T) [--hotline ...] | show (--group G | --terminal T)
    posp tms group TERMINAL GROUP                put a terminal in a parameter/rollout group
    posp tms rollout start --group G --target PATH [--waves 1,10,100] [--threshold PCT]
    posp tms rollout status [ID] | pause ID | resume ID | halt ID
    posp tms versions --group G                  every terminal's reported version

``register(commands, common)`` adds them to ``posp``'s parser.  Invariants: a
bad argument raises ``AdminError`` naming it (exit 2); a repository or store
that cannot do the work raises ``TmsError``/``StoreError`` (exit 1); key
material is never printed, only key ids.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from posp import reports
from posp.admin import AdminError
from posp.store.sql_store import SqlStore
from posp.store.tms import SqlTmsStore
from posp.tms.keys import KEY_TYPES, ROLES, TmsUsageError
from posp.tms.params import ParamValues, Scope, effective
from posp.tms.repository import TufRepository
from posp.tms.rollout import RolloutService

if TYPE_CHECKING:
    from posp.cli import Context

Handler = Callable[["Context"], Coroutine[Any, Any, int]]
_PARAM_FLAGS = {
    "hotline": str,
    "merchant_name": str,
    "txn_mask": str,
    "purchase_cap_minor": int,
    "refund_cap_minor": int,
    "transfer_cap_minor": int,
    "small_amount_limit_minor": int,
}


def repository(ctx: Context) -> TufRepository:
    tms, data_dir = ctx.settings.tms, ctx.settings.data_dir
    return TufRepository(tms.path(data_dir, tms.repo_dir), tms.key_store(data_dir), tms.expiry())


@asynccontextmanager
async def open_tms(ctx: Context) -> AsyncIterator[SqlTmsStore]:
    from posp.store import open_store

    settings = ctx.settings
    if settings.store_url.startswith("sqlite:"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.store_url)
    if not isinstance(store, SqlStore):
        raise AdminError("store_url", "terminal management needs the SQL store")
    await store.open()
    try:
        yield SqlTmsStore(store)
    finally:
        await store.close()


def _emit(ctx: Context, title: str, rows: Sequence[dict[str, Any]]) -> int:
    """The rows as a table, or as JSON with ``--json`` (posp.reports renders both)."""
    columns = tuple(dict.fromkeys(column for row in rows for column in row))
    view = reports.View(title, columns, list(rows))
    reports.render(view, "json" if ctx.as_json else "table", ctx.out)
    return 0


# --- keys, publish, refresh, serve ------------------------------------------------------


async def keys_cmd(ctx: Context) -> int:
    a, repo = ctx.args, repository(ctx)
    if a.action == "init":
        counts = {"root": a.root_keys, "targets": a.targets_keys}
        limits = {"root": a.root_threshold, "targets": a.targets_threshold}
        made = repo.init(
            a.key_type or ctx.settings.tms.key_type, key_counts=counts, thresholds=limits
        )
        made_rows = [{"role": r, "key id": k} for r, ids in made.items() for k in ids]
        return _emit(ctx, f"TUF repository created in {repo.repo_dir}", made_rows)
    if a.action == "rotate":
        new, retired = repo.rotate(a.role, a.key_type or ctx.settings.tms.key_type)
        changed = [{"role": a.role, "key id": new, "state": "new"}]
        changed += [{"role": a.role, "key id": k, "state": "revoked"} for k in retired]
        return _emit(ctx, f"root v{repo.root().signed.version}", changed)
    if a.action == "revoke":
        role = repo.revoke(a.keyid)
        return _emit(
            ctx, f"root v{repo.root().signed.version}", [{"role": role, "revoked": a.keyid}]
        )
    root = repo.root().signed
    rows: list[dict[str, Any]] = [
        {
            "role": role,
            "threshold": root.roles[role].threshold,
            "key ids": " ".join(k[:16] for k in root.roles[role].keyids),
        }
        for role in ROLES
    ]
    return _emit(ctx, f"root v{root.version}, expires {root.expires:%Y-%m-%d}", rows)


async def publish_cmd(ctx: Context) -> int:
    a, repo = ctx.args, repository(ctx)
    path, info = repo.publish(
        Path(a.package),
        version=a.version,
        model=a.model,
        acquirer_id=a.acquirer or "",
        min_hardware=a.min_hardware,
        version_counter=a.counter,
        max_bytes=ctx.settings.tms.max_package_bytes,
    )
    row = {"target": path, "version": info.version, "counter": info.version_counter}
    return _emit(ctx, "published", [{**row, "model": info.model, "acquirer": info.acquirer_id}])


async def refresh_cmd(ctx: Context) -> int:
    version = repository(ctx).refresh(snapshot=ctx.args.snapshot)
    return _emit(ctx, "re-signed", [{"timestamp version": version}])


async def serve_cmd(ctx: Context) -> int:
    from posp.tms.server import serve

    tms, repo = ctx.settings.tms, repository(ctx)
    repo.root()  # a missing repository is an error now, not at the first request
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_tms(ctx) as store:
        await serve(
            repo,
            ctx.args.host or tms.http_host,
            tms.http_port if ctx.args.port is None else ctx.args.port,
            offers=RolloutService(store).offer,
            refresh_every_s=tms.timestamp_refresh_s,
            stop=stop,
        )
    return 0


# --- parameters, groups, rollouts, versions -------------------------------------------------


def _scope(args: argparse.Namespace) -> tuple[Scope, str]:
    if bool(args.group) == bool(args.terminal):
        raise AdminError("--group/--terminal", "give exactly one")
    return (Scope.GROUP, args.group) if args.group else (Scope.TERMINAL, args.terminal)


async def params_cmd(ctx: Context) -> int:
    a = ctx.args
    scope, scope_id = _scope(a)
    async with open_tms(ctx) as store:
        if a.action == "set":
            current = await store.get_param_set(scope, scope_id)
            changes = {k: getattr(a, k) for k in _PARAM_FLAGS if getattr(a, k) is not None}
            if a.small_amount_enabled is not None:
                changes["small_amount_enabled"] = a.small_amount_enabled == "yes"
            try:
                values = (current.values if current else ParamValues()).over(ParamValues(**changes))
            except ValidationError as exc:
                field = str(exc.errors()[0]["loc"][0])
                raise AdminError(f"--{field.replace('_', '-')}", exc.errors()[0]["msg"]) from None
            version = await store.set_param_set(scope, scope_id, values)
            return _emit(ctx, f"{scope} {scope_id}", [{"version": version, **values.model_dump()}])
        own = await store.get_param_set(scope, scope_id)
        rows = [
            {
                "level": str(scope),
                "version": own.version if own else None,
                **(own.values if own else ParamValues()).model_dump(),
            }
        ]
        if scope is Scope.TERMINAL:
            known = await store.terminal(scope_id)
            group = await store.get_param_set(Scope.GROUP, known.group if known else "default")
            merged = effective(group, own, known.group_version if known else 0)
            rows.append(
                {"level": "effective", "version": merged.version, **merged.values.model_dump()}
            )
            rows.append({"level": "held", "version": known.held_param_version if known else None})
        return _emit(ctx, f"{scope} {scope_id}", rows)


async def group_cmd(ctx: Context) -> int:
    async with open_tms(ctx) as store:
        version = await store.set_group(ctx.args.terminal_id, ctx.args.group)
    return _emit(
        ctx,
        "group",
        [{"terminal": ctx.args.terminal_id, "group": ctx.args.group, "version": version}],
    )


def _waves(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise AdminError("--waves", "comma-separated percentages, e.g. 1,10,100") from None


async def rollout_cmd(ctx: Context) -> int:
    a, tms = ctx.args, ctx.settings.tms
    async with open_tms(ctx) as store:
        service = RolloutService(store)
        if a.action == "start":
            packages = repository(ctx).packages()
            if a.target not in packages:
                raise AdminError("--target", f"{a.target} is not a published package")
            waves = _waves(a.waves) if a.waves else tms.rollout_waves_pct
            threshold = tms.failure_threshold_pct if a.threshold is None else a.threshold
            rollout = await service.start(
                a.group, a.target, packages[a.target].version, waves, threshold
            )
        elif a.action in ("pause", "resume", "halt"):
            rollout = await getattr(service, a.action)(a.rollout_id)
        elif a.rollout_id is None:
            return _emit(ctx, "rollouts", [_rollout_row(r) for r in await store.rollouts()])
        else:
            found = await store.rollout(a.rollout_id)
            if found is None:
                raise AdminError("ID", f"no rollout {a.rollout_id}")
            rollout = found
        rows = []
        for wave, pct in enumerate(rollout.waves_pct):
            tally = await store.wave_tally(rollout.id, wave)
            rows.append(
                {
                    "wave": wave + 1,
                    "pct": pct,
                    "terminals": tally.members,
                    "installed": tally.installed,
                    "failed": tally.failed,
                }
            )
        title = f"rollout {rollout.id} {rollout.state} at wave {rollout.wave + 1}: {rollout.target}"
        return _emit(ctx, title + (f" ({rollout.reason})" if rollout.reason else ""), rows)


def _rollout_row(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "group": r.group,
        "target": r.target,
        "state": r.state,
        "wave": r.wave + 1,
        "reason": r.reason,
    }


async def versions_cmd(ctx: Context) -> int:
    async with open_tms(ctx) as store:
        terminals = await store.group_terminals(ctx.args.group)
    rows = [
        {
            "terminal": t.terminal_id,
            "app version": t.app_version,
            "params held": t.held_param_version,
            "last install": t.install_result,
        }
        for t in terminals
    ]
    return _emit(ctx, f"group {ctx.args.group}", rows)


# --- parser ---------------------------------------------------------------------------------


def _usage_errors(handler: Handler) -> Handler:
    """The handler with TmsUsageError raised as AdminError, which ``posp`` answers with exit 2."""

    async def run(ctx: Context) -> int:
        try:
            return await handler(ctx)
        except TmsUsageError as exc:
            raise AdminError(exc.argument, exc.reason) from exc

    return run


def register(commands: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    """Add ``posp tms ...`` to ``posp``'s sub-commands (``common``: shared options)."""
    parser_class = type(common)
    tms = commands.add_parser("tms", help="terminal management: keys, packages, rollouts")
    groups = tms.add_subparsers(dest="tms_command", required=True, parser_class=parser_class)

    def leaf(
        group: Any, name: str, handler: Handler, help: str | None = None
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, parents=[common], help=help)
        p.set_defaults(handler=_usage_errors(handler), action=name)
        return p

    def sub(name: str, help: str) -> Any:
        return groups.add_parser(name, help=help).add_subparsers(
            dest="action", required=True, parser_class=parser_class
        )

    keys = sub("keys", "TUF signing keys")
    init = leaf(
        keys,
        "init",
        keys_cmd,
        "new repository: offline root/targets, online snapshot/timestamp keys",
    )
    init.add_argument("--key-type", choices=KEY_TYPES)
    for role in ("root", "targets"):
        init.add_argument(f"--{role}-keys", type=int, default=1, metavar="N")
        init.add_argument(f"--{role}-threshold", type=int, default=1, metavar="T")
    leaf(keys, "list", keys_cmd)
    rotate = leaf(keys, "rotate", keys_cmd, "replace a role's keys (root version + 1)")
    rotate.add_argument("role", choices=ROLES)
    rotate.add_argument("--key-type", choices=KEY_TYPES)
    leaf(keys, "revoke", keys_cmd, "remove one key from its role").add_argument(
        "keyid", metavar="KEYID"
    )

    publish = leaf(groups, "publish", publish_cmd, "sign a package into the targets")
    publish.add_argument("package", metavar="PACKAGE")
    publish.add_argument("--version", required=True, help="application version, an..8")
    publish.add_argument("--model", required=True, help="terminal model")
    publish.add_argument("--acquirer", help="acquirer id (default: any)")
    publish.add_argument("--min-hardware", type=int, default=0, metavar="H")
    publish.add_argument("--counter", type=int, help="version counter (default: highest + 1)")
    leaf(groups, "refresh", refresh_cmd, "re-sign the timestamp").add_argument(
        "--snapshot", action="store_true"
    )
    serve = leaf(groups, "serve", serve_cmd, "serve metadata, packages and offers over HTTP")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    params = sub("params", "parameter sets (F62)")
    for action in ("set", "show"):
        p = leaf(params, action, params_cmd)
        p.add_argument("--group")
        p.add_argument("--terminal")
    for flag, kind in _PARAM_FLAGS.items():
        p_set = params.choices["set"]
        p_set.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind)
    params.choices["set"].add_argument("--small-amount-enabled", choices=("yes", "no"))
    group = leaf(groups, "group", group_cmd, "put a terminal in a group")
    group.add_argument("terminal_id", metavar="TERMINAL")
    group.add_argument("group", metavar="GROUP")

    rollout = sub("rollout", "staged software rollouts")
    start = leaf(rollout, "start", rollout_cmd)
    start.add_argument("--group", required=True)
    start.add_argument("--target", required=True, help="published target path, e.g. P8/V2.0.pkg")
    start.add_argument("--waves", help="cumulative percentages (tms.rollout_waves_pct)")
    start.add_argument("--threshold", type=float, help="halt above this failure %%")
    leaf(rollout, "status", rollout_cmd).add_argument(
        "rollout_id", type=int, nargs="?", metavar="ID"
    )
    for action in ("pause", "resume", "halt"):
        leaf(rollout, action, rollout_cmd).add_argument("rollout_id", type=int, metavar="ID")
    leaf(groups, "versions", versions_cmd, "every terminal's version").add_argument(
        "--group", required=True
    )
