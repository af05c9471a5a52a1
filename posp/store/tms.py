"""Terminal-management storage (migration 0020): parameter sets, what each
terminal holds and reports, and staged rollouts — SQL written once over a
``SqlStore``'s ``_read``/``_write`` primitives, so SQLite and PostgreSQL share it.

Invariants:
* Each change is one statement (after drawing a version; bulk member inserts:
  one per chunk); changes
  of a rollout's wave or state are compare-and-set ``UPDATE ... RETURNING``, so
  of two switch instances evaluating one wave exactly one advances or halts it.
* Versions of parameter sets and group memberships come from the store's
  ``next_sequence("tms_params")``: one increasing counter across instances.
* A member's ``installed`` outcome is final: a later failure report does not
  overwrite it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from posp.store.rows import now_utc
from posp.store.sql_store import SqlStore
from posp.tms.params import DEFAULT_GROUP, ParamSet, ParamValues, Scope

_MEMBER_CHUNK: Final = 300
INSTALLED: Final = "installed"
FAILED: Final = "failed"


@dataclass(frozen=True, slots=True)
class TerminalTms:
    """What the switch knows of one terminal's management state."""

    terminal_id: str
    group: str = DEFAULT_GROUP
    group_version: int = 0
    held_param_version: int | None = None
    app_version: str | None = None
    install_result: str | None = None
    identity: str | None = None  # F59 as received
    status: dict[str, str] | None = None  # the last 362's tags
    held_capk_version: int | None = None
    held_aid_version: int | None = None


@dataclass(frozen=True, slots=True)
class ManagementRow:
    """What the switch reads of a terminal for header digit 6 and its caps."""

    known: TerminalTms | None
    group_set: ParamSet | None
    own_set: ParamSet | None
    offer: str | None  # target path of the package a running rollout offers it
    #: Every value the row was built from but the parameter sets' contents (their
    #: versions change with them): equal fingerprints, equal rows
    #: (``SqlTmsStore.view_fingerprints``).  None: not known (a test double).
    fingerprint: tuple[Any, ...] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Rollout:
    id: int
    group: str
    target: str
    app_version: str
    waves_pct: tuple[float, ...]
    wave: int
    state: str  # running | paused | halted | done
    failure_threshold_pct: float
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class WaveTally:
    members: int
    installed: int
    failed: int


class TmsStore(Protocol):
    """The storage the TMS needs (SqlTmsStore; a test double may stand in)."""

    async def set_param_set(self, scope: Scope, scope_id: str, values: ParamValues) -> int: ...
    async def get_param_set(self, scope: Scope, scope_id: str) -> ParamSet | None: ...
    async def set_group(self, terminal_id: str, group: str) -> int: ...
    async def terminal(self, terminal_id: str) -> TerminalTms | None: ...
    async def group_terminals(self, group: str) -> list[TerminalTms]: ...
    async def set_held_params(self, terminal_id: str, version: int) -> None: ...
    async def set_held_ic(self, terminal_id: str, kind: str, version: int) -> None: ...
    async def management_view(self, terminal_id: str) -> ManagementRow: ...
    async def view_fingerprints(
        self, terminal_ids: Sequence[str]
    ) -> dict[str, tuple[Any, ...]]: ...
    async def record_status(
        self,
        terminal_id: str,
        *,
        app_version: str | None,
        install_result: str | None = None,
        identity: str | None = None,
        status: dict[str, str] | None = None,
    ) -> None: ...
    async def create_rollout(
        self,
        group: str,
        target: str,
        app_version: str,
        waves_pct: Sequence[float],
        threshold: float,
    ) -> int: ...
    async def add_members(self, rollout_id: int, waves: dict[str, int]) -> None: ...
    async def rollout(self, rollout_id: int) -> Rollout | None: ...
    async def rollouts(self) -> list[Rollout]: ...
    async def rollouts_of(self, terminal_id: str) -> list[tuple[Rollout, int, str | None]]: ...
    async def set_rollout_state(
        self, rollout_id: int, from_states: tuple[str, ...], to_state: str, reason: str | None
    ) -> bool: ...
    async def advance_wave(self, rollout_id: int, from_wave: int) -> bool: ...
    async def record_outcome(
        self, rollout_id: int, terminal_id: str, outcome: str, reason: str | None
    ) -> bool: ...
    async def wave_tally(self, rollout_id: int, wave: int) -> WaveTally: ...


_ROLLOUT_COLUMNS: Final = (
    "id, group_name, target, app_version, waves, wave, state, failure_threshold_pct, reason"
)


def _rollout(row: Any) -> Rollout:
    waves = tuple(float(w) for w in str(row["waves"]).split(","))
    return Rollout(
        int(row["id"]),
        row["group_name"],
        row["target"],
        row["app_version"],
        waves,
        int(row["wave"]),
        row["state"],
        float(row["failure_threshold_pct"]),
        row["reason"],
    )


def _terminal(row: Any) -> TerminalTms:
    status = row["status"]
    return TerminalTms(
        row["terminal_id"],
        row["group_name"],
        int(row["group_version"]),
        None if row["held_param_version"] is None else int(row["held_param_version"]),
        row["app_version"],
        row["install_result"],
        row["identity"],
        json.loads(status) if status else None,
        _int_or_none(row["held_capk_version"]),
        _int_or_none(row["held_aid_version"]),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


#: Terminals per ``view_fingerprints`` statement (``SqlStore._rows_by_keys``).
VIEW_CHECK_CHUNK: Final = 128
#: Columns of a view row that are not part of its fingerprint.
_NOT_FINGERPRINT: Final = frozenset({"registry_key", "g_params", "p_params"})


def _view_sql(*, with_params: bool, terminals: int) -> str:
    """``management_view``'s query for ``terminals`` ids; without the parameter
    sets' contents (``with_params`` false) it gives the fingerprints' columns."""
    params = " g.params AS g_params, p.params AS p_params," if with_params else ""
    if terminals == 1:
        ids = "(SELECT CAST(? AS TEXT) AS tid) x"
    else:
        rows = ", ".join(["(CAST(? AS TEXT))"] * terminals)
        ids = f"(SELECT column1 AS tid FROM (VALUES {rows}) AS v) x"
    return (
        "SELECT x.tid AS registry_key, t.*, g.version AS g_version,"
        f"{params} p.version AS p_version,"
        " (SELECT r.target FROM tms_rollout_members m"
        " JOIN tms_rollouts r ON r.id = m.rollout_id"
        " WHERE m.terminal_id = x.tid AND r.state = 'running' AND m.wave <= r.wave"
        " AND m.outcome IS NULL ORDER BY r.id DESC LIMIT 1) AS offer"
        f" FROM {ids}"
        " LEFT JOIN tms_terminals t ON t.terminal_id = x.tid"
        " LEFT JOIN tms_param_sets g ON g.scope = 'group'"
        f" AND g.scope_id = COALESCE(t.group_name, '{DEFAULT_GROUP}')"
        " LEFT JOIN tms_param_sets p ON p.scope = 'terminal' AND p.scope_id = x.tid"
    )


def _fingerprint(row: Any) -> tuple[Any, ...]:
    """Every column of a view row but its id and the parameter sets' contents,
    by name (so a column added to ``tms_terminals`` later is compared too)."""
    names = row.keys()  # a driver row iterates over its values, not its names
    return tuple(sorted((k, row[k]) for k in names if k not in _NOT_FINGERPRINT))


class SqlTmsStore:
    """The TMS tables on an open ``SqlStore`` (SQLite or PostgreSQL)."""

    def __init__(self, store: SqlStore) -> None:
        self._db = store

    @property
    def sql_store(self) -> SqlStore:
        """The store these tables live in (the IC parameter tables share it)."""
        return self._db

    def _now(self) -> Any:
        return self._db._time(now_utc())

    # --- parameter sets -------------------------------------------------------------
    async def set_param_set(self, scope: Scope, scope_id: str, values: ParamValues) -> int:
        version = await self._db.next_sequence("tms_params")
        sql = (
            "INSERT INTO tms_param_sets (scope, scope_id, version, params, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, scope_id) DO UPDATE SET"
            " version = excluded.version, params = excluded.params,"
            " updated_at = excluded.updated_at"
        )
        params = [scope.value, scope_id, version, values.model_dump_json(exclude_none=True)]
        await self._db._write("tms_set_params", sql, [*params, self._now()])
        return version

    async def get_param_set(self, scope: Scope, scope_id: str) -> ParamSet | None:
        sql = "SELECT version, params FROM tms_param_sets WHERE scope = ? AND scope_id = ?"
        row = await self._db._read_one("tms_get_params", sql, [scope.value, scope_id])
        if row is None:
            return None
        values = ParamValues.model_validate_json(row["params"])
        return ParamSet(scope, scope_id, int(row["version"]), values)

    # --- terminals ------------------------------------------------------------------
    async def set_group(self, terminal_id: str, group: str) -> int:
        version = await self._db.next_sequence("tms_params")
        sql = (
            "INSERT INTO tms_terminals (terminal_id, group_name, group_version) VALUES (?, ?, ?)"
            " ON CONFLICT (terminal_id) DO UPDATE SET group_name = excluded.group_name,"
            " group_version = excluded.group_version"
        )
        await self._db._write("tms_set_group", sql, [terminal_id, group, version])
        return version

    async def terminal(self, terminal_id: str) -> TerminalTms | None:
        sql = "SELECT * FROM tms_terminals WHERE terminal_id = ?"
        row = await self._db._read_one("tms_terminal", sql, [terminal_id])
        return None if row is None else _terminal(row)

    async def group_terminals(self, group: str) -> list[TerminalTms]:
        sql = "SELECT * FROM tms_terminals WHERE group_name = ? ORDER BY terminal_id"
        return [_terminal(r) for r in await self._db._read("tms_group", sql, [group])]

    async def set_held_params(self, terminal_id: str, version: int) -> None:
        sql = (
            "INSERT INTO tms_terminals (terminal_id, held_param_version) VALUES (?, ?)"
            " ON CONFLICT (terminal_id) DO UPDATE SET"
            " held_param_version = excluded.held_param_version"
        )
        await self._db._write("tms_held_params", sql, [terminal_id, version])

    async def set_held_ic(self, terminal_id: str, kind: str, version: int) -> None:
        """What a 371 / 381 ends: the CAPK or AID set version the terminal now holds."""
        column = {"capk": "held_capk_version", "aid": "held_aid_version"}[kind]
        sql = (
            f"INSERT INTO tms_terminals (terminal_id, {column}) VALUES (?, ?)"
            f" ON CONFLICT (terminal_id) DO UPDATE SET {column} = excluded.{column}"
        )
        await self._db._write("tms_held_ic", sql, [terminal_id, version])

    async def management_view(self, terminal_id: str) -> ManagementRow:
        """The terminal's TMS row, its group's parameter set, its own, and the target
        of the package waiting for it, in one query.  The offer is
        ``RolloutService.offer``'s rule in SQL: the newest running rollout whose
        reached waves hold the terminal and that has no outcome from it yet."""
        sql = _view_sql(with_params=True, terminals=1)
        row = await self._db._key_read("tms_view", sql, [terminal_id])
        if row is None:
            return ManagementRow(None, None, None, None)
        known = None if row["terminal_id"] is None else _terminal(row)
        sets = []
        for prefix, scope, scope_id in (
            ("g", Scope.GROUP, known.group if known else DEFAULT_GROUP),
            ("p", Scope.TERMINAL, terminal_id),
        ):
            version = row[f"{prefix}_version"]
            sets.append(
                None
                if version is None
                else ParamSet(
                    scope,
                    scope_id,
                    int(version),
                    ParamValues.model_validate_json(row[f"{prefix}_params"]),
                )
            )
        return ManagementRow(known, sets[0], sets[1], row["offer"], _fingerprint(row))

    async def view_fingerprints(self, terminal_ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """``management_view``'s fingerprint of each terminal, without the
        parameter sets' contents, in one statement per ``VIEW_CHECK_CHUNK``."""
        sql = _view_sql(with_params=False, terminals=VIEW_CHECK_CHUNK)
        found = await self._db._rows_by_keys(
            "tms_view_versions", sql, list(terminal_ids), VIEW_CHECK_CHUNK
        )
        return {
            str(row["registry_key"]): _fingerprint(row)
            for row in found
            if row["registry_key"] is not None
        }

    async def record_status(
        self,
        terminal_id: str,
        *,
        app_version: str | None,
        install_result: str | None = None,
        identity: str | None = None,
        status: dict[str, str] | None = None,
    ) -> None:
        """A 362 upload or an F59 A2/05 report; absent values keep what was known."""
        sql = (
            "INSERT INTO tms_terminals (terminal_id, app_version, install_result, identity,"
            " status, status_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (terminal_id) DO UPDATE"
            " SET app_version = COALESCE(excluded.app_version, tms_terminals.app_version),"
            " install_result = COALESCE(excluded.install_result, tms_terminals.install_result),"
            " identity = COALESCE(excluded.identity, tms_terminals.identity),"
            " status = COALESCE(excluded.status, tms_terminals.status),"
            " status_at = excluded.status_at"
        )
        encoded = json.dumps(status, ensure_ascii=False) if status is not None else None
        params = [terminal_id, app_version, install_result, identity, encoded, self._now()]
        await self._db._write("tms_status", sql, params)

    # --- rollouts -------------------------------------------------------------------
    async def create_rollout(
        self,
        group: str,
        target: str,
        app_version: str,
        waves_pct: Sequence[float],
        threshold: float,
    ) -> int:
        sql = (
            "INSERT INTO tms_rollouts (group_name, target, app_version, waves, wave, state,"
            " failure_threshold_pct, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 0, 'running', ?, ?, ?) RETURNING id"
        )
        waves = ",".join(f"{w:g}" for w in waves_pct)
        now = self._now()
        params = [group, target, app_version, waves, threshold, now, now]
        return int((await self._db._write("tms_rollout", sql, params))[0]["id"])

    async def add_members(self, rollout_id: int, waves: dict[str, int]) -> None:
        items = sorted(waves.items())
        for start in range(0, len(items), _MEMBER_CHUNK):
            chunk = items[start : start + _MEMBER_CHUNK]
            sql = "INSERT INTO tms_rollout_members (rollout_id, terminal_id, wave) VALUES " + (
                ", ".join(["(?, ?, ?)"] * len(chunk))
            )
            params = [v for tid, wave in chunk for v in (rollout_id, tid, wave)]
            await self._db._write("tms_members", sql, params)

    async def rollout(self, rollout_id: int) -> Rollout | None:
        sql = f"SELECT {_ROLLOUT_COLUMNS} FROM tms_rollouts WHERE id = ?"
        row = await self._db._read_one("tms_rollout", sql, [rollout_id])
        return None if row is None else _rollout(row)

    async def rollouts(self) -> list[Rollout]:
        sql = f"SELECT {_ROLLOUT_COLUMNS} FROM tms_rollouts ORDER BY id"
        return [_rollout(r) for r in await self._db._read("tms_rollouts", sql)]

    async def rollouts_of(self, terminal_id: str) -> list[tuple[Rollout, int, str | None]]:
        """(rollout, the terminal's wave, its outcome) of every rollout it belongs to."""
        columns = ", ".join(f"r.{c.strip()}" for c in _ROLLOUT_COLUMNS.split(","))
        sql = (
            f"SELECT {columns}, m.wave AS member_wave, m.outcome FROM tms_rollout_members m"
            " JOIN tms_rollouts r ON r.id = m.rollout_id WHERE m.terminal_id = ? ORDER BY r.id"
        )
        found = await self._db._read("tms_rollouts_of", sql, [terminal_id])
        return [(_rollout(r), int(r["member_wave"]), r["outcome"]) for r in found]

    async def set_rollout_state(
        self, rollout_id: int, from_states: tuple[str, ...], to_state: str, reason: str | None
    ) -> bool:
        marks = ", ".join("?" * len(from_states))
        sql = (
            "UPDATE tms_rollouts SET state = ?, reason = ?, updated_at = ?"
            f" WHERE id = ? AND state IN ({marks}) RETURNING id"
        )
        params = [to_state, reason, self._now(), rollout_id, *from_states]
        return bool(await self._db._write("tms_rollout_state", sql, params))

    async def advance_wave(self, rollout_id: int, from_wave: int) -> bool:
        sql = (
            "UPDATE tms_rollouts SET wave = wave + 1, updated_at = ?"
            " WHERE id = ? AND wave = ? AND state = 'running' RETURNING id"
        )
        params = [self._now(), rollout_id, from_wave]
        return bool(await self._db._write("tms_advance", sql, params))

    async def record_outcome(
        self, rollout_id: int, terminal_id: str, outcome: str, reason: str | None
    ) -> bool:
        sql = (
            "UPDATE tms_rollout_members SET outcome = ?, reason = ?"
            " WHERE rollout_id = ? AND terminal_id = ?"
            " AND (outcome IS NULL OR outcome <> 'installed') RETURNING wave"
        )
        params = [outcome, reason, rollout_id, terminal_id]
        return bool(await self._db._write("tms_outcome", sql, params))

    async def wave_tally(self, rollout_id: int, wave: int) -> WaveTally:
        sql = (
            "SELECT COUNT(*) AS n,"
            " SUM(CASE WHEN outcome = 'installed' THEN 1 ELSE 0 END) AS installed,"
            " SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END) AS failed"
            " FROM tms_rollout_members WHERE rollout_id = ? AND wave = ?"
        )
        row = await self._db._read_one("tms_tally", sql, [rollout_id, wave])
        if row is None:
            return WaveTally(0, 0, 0)
        return WaveTally(int(row["n"]), int(row["installed"] or 0), int(row["failed"] or 0))
