"""The report of a fleet run: derived from its statistics, as JSON and back.

A ``FleetReport`` is the run's ``FleetStats`` (counts and histograms only)
plus its length and parameters; every figure it shows is computed from those,
so a report read back from JSON (``from_json``, through the ``raw`` section)
and the reports of several fleet processes merged (``merge_reports``) give the
same figures as one process that saw every sample.

Invariants: ``requests`` and the rates count the load phase only (every
exchange of it: transactions, sign-ins, reversals, settlements), and the type
rows add up to it; latency percentiles are over answered exchanges only;
``response_codes``, ``timeouts`` and ``comms_errors`` keep their old meaning
(every phase, sign-ins included) for scripts that read them; JSON is written
whole or not at all (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from terminals.fleet_stats import FleetStats, StepTally, Tally
from terminals.outcome import OutcomeClass
from terminals.response_codes import meaning

RAW_FORMAT = 1  # version of the ``raw`` section: merge refuses another


def _per_s(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _tally_json(tally: Tally, seconds: float) -> dict[str, Any]:
    return {
        "requests": tally.requests,
        "per_s": _per_s(tally.requests, seconds),
        "answered_per_s": _per_s(tally.answered, seconds),
        "outcomes": {c.value: tally.outcomes[c.value] for c in OutcomeClass},
        "codes": dict(sorted(tally.codes.items())),
        "error_rate": round(tally.error_rate(), 6),
        "approval_rate": round(tally.approval_rate(), 6),
        "latency_ms": tally.latency.summary_ms(),
    }


@dataclass(frozen=True)
class FleetReport:
    """The outcome of a fleet run (or of several merged)."""

    stats: FleetStats
    duration_s: float
    parameters: dict[str, Any] = field(default_factory=dict)
    interrupted: str | None = None  # the signal that stopped the run early
    failures: tuple[str, ...] = ()  # why the run failed (thresholds, unreachable switch)

    # --- the load phase ------------------------------------------------------

    @property
    def requests(self) -> int:
        return self.stats.total.requests

    @property
    def requests_per_s(self) -> float:
        return _per_s(self.requests, self.duration_s)

    @property
    def answered(self) -> int:
        return self.stats.total.answered

    @property
    def outcomes(self) -> dict[str, int]:
        return {c.value: self.stats.total.outcomes[c.value] for c in OutcomeClass}

    @property
    def latency_ms(self) -> dict[str, float]:
        """Percentiles of answered exchanges (approved or declined) only."""
        return self.stats.total.latency.summary_ms()

    @property
    def load_response_codes(self) -> dict[str, int]:
        return dict(sorted(self.stats.total.codes.items()))

    @property
    def unreachable(self) -> bool:
        """No exchange of the whole run got an answer: the switch was never reached."""
        return self.stats.answers == 0 and self.stats.requests > 0

    def threshold_values(self) -> dict[str, float]:
        """The figures ``--fail-on`` can name."""
        total = self.stats.total
        return {
            "error_rate": total.error_rate(),
            "approval_rate": total.approval_rate(),
            **{k: v for k, v in self.latency_ms.items() if k.startswith("p")},
        }

    def types(self) -> dict[str, dict[str, Any]]:
        """Per transaction type (the mix's names, then sign-in, reversal...)."""
        return {
            name: _tally_json(tally, self.duration_s)
            for name, tally in sorted(self.stats.by_type.items(), key=lambda kv: -kv[1].requests)
        }

    def offered(self) -> dict[str, Any]:
        """Open loop: offered vs started; why they differ."""
        stats = self.stats
        if self.parameters.get("loop") == "closed" or stats.ticks == 0:
            return {"loop": "closed"}
        started = stats.ticks - stats.skipped
        note = ""
        if stats.skipped:
            note = (
                f"{stats.skipped} of {stats.ticks} ticks ({stats.skipped / stats.ticks:.1%})"
                " found no idle terminal and were skipped: the offered rate was NOT applied."
                " Each terminal has one request in flight; use more terminals (or lower the"
                " rate) until no tick is skipped."
            )
        return {
            "loop": "open",
            "ticks": stats.ticks,
            "skipped": stats.skipped,
            "offered_per_s": _per_s(stats.ticks, self.duration_s),
            "started_per_s": _per_s(started, self.duration_s),
            "note": note,
        }

    def steps(self) -> list[dict[str, Any]]:
        """A row per step (or tenth of a ramp) of the load shape."""
        shape = self.parameters.get("shape") or []
        rows = []
        for (start, end, _), step in zip(shape, self.stats.steps, strict=False):
            row = _step_json(step)
            rows.append({"target_per_s": [start, end] if start != end else start, **row})
        return rows

    # --- every phase (kept for scripts reading the old report) --------------

    @property
    def timeouts(self) -> int:
        return self.stats.timeouts

    @property
    def comms_errors(self) -> int:
        return self.stats.comms_errors

    @property
    def mac_failures(self) -> int:
        return self.stats.mac_failures

    @property
    def reversals_sent(self) -> int:
        return self.stats.reversals_sent

    @property
    def sign_ins(self) -> int:
        return self.stats.sign_ins

    @property
    def settlements(self) -> int:
        return self.stats.settlements

    @property
    def skipped(self) -> int:
        return self.stats.skipped

    @property
    def held_connections(self) -> int:
        return self.stats.held_connections

    @property
    def dropped_connections(self) -> int:
        return self.stats.dropped_connections

    @property
    def probe_failures(self) -> int:
        return self.stats.probe_failures

    @property
    def reconnects(self) -> int:
        return self.stats.reconnects

    @property
    def transactions(self) -> dict[str, int]:
        """Transactions started, by the mix's names."""
        return dict(sorted(self.stats.transactions.items()))

    @property
    def errors(self) -> dict[str, int]:
        """The fleet's own failures (a request it could not build), by exception."""
        return dict(self.stats.errors)

    @property
    def sign_in_phase_s(self) -> float:
        return round(self.stats.sign_in_phase_s, 3)

    @property
    def response_codes(self) -> dict[str, int]:
        return dict(sorted(self.stats.codes.items()))

    @property
    def sign_ins_per_s(self) -> float:
        return _per_s(self.stats.ramp_sign_ins, self.stats.sign_in_phase_s)

    # --- JSON ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "parameters": self.parameters,
            "interrupted": self.interrupted,
            "failures": list(self.failures),
            "duration_s": self.duration_s,
            "requests": self.requests,
            "requests_per_s": self.requests_per_s,
            "answered": self.answered,
            "outcomes": self.outcomes,
            "error_rate": round(stats.total.error_rate(), 6),
            "approval_rate": round(stats.total.approval_rate(), 6),
            "latency_ms": self.latency_ms,
            "latency_ms_by_outcome": {
                name: hist.summary_ms() for name, hist in sorted(stats.by_class.items())
            },
            "types": self.types(),
            "load_response_codes": self.load_response_codes,
            "code_meanings": {code: meaning(code) for code in self.load_response_codes},
            "offered": self.offered(),
            "steps": self.steps(),
            # every phase (sign-in, hold probes, load), as before
            "response_codes": self.response_codes,
            "transactions": self.transactions,
            "errors": self.errors,
            **{name: getattr(stats, name) for name in _STATS_FIELDS},
            "sign_in_phase_s": self.sign_in_phase_s,
            "sign_ins_per_s": self.sign_ins_per_s,
            "raw": {"format": RAW_FORMAT, **stats.to_raw()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FleetReport:
        """A report from ``to_json``'s output; ValueError when it is not one."""
        try:
            raw = data["raw"]
            if raw.get("format") != RAW_FORMAT:
                raise ValueError(f"raw format {raw.get('format')!r}, expected {RAW_FORMAT}")
            stats = FleetStats.from_raw(raw)
            return cls(
                stats,
                float(data["duration_s"]),
                dict(data.get("parameters") or {}),
                data.get("interrupted"),
                tuple(data.get("failures") or ()),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a posp-fleet JSON report (missing {exc})") from exc


_STATS_FIELDS = (
    "timeouts", "comms_errors", "mac_failures", "reversals_sent", "sign_ins", "settlements",
    "skipped", "held_connections", "dropped_connections", "probe_failures", "reconnects",
)  # fmt: skip


def _step_json(step: StepTally) -> dict[str, Any]:
    return {
        "seconds": step.seconds,
        "ticks": step.ticks,
        "skipped": step.skipped,
        **_tally_json(step.tally, step.seconds),
    }


def _summed_shape(shapes: list[list[list[float]]]) -> list[list[float]]:
    """Processes that ran the same steps side by side: their step targets add up
    (empty unless every process ran as many steps)."""
    if not shapes[0] or any(len(shape) != len(shapes[0]) for shape in shapes):
        return []
    return [
        [sum(s[i][0] for s in shapes), sum(s[i][1] for s in shapes), seconds]
        for i, (_, _, seconds) in enumerate(shapes[0])
    ]


def merge_reports(reports: Sequence[FleetReport]) -> FleetReport:
    """One report of runs made side by side (several fleet processes): counts
    and histograms add up, the length is the longest run's."""
    if not reports:
        raise ValueError("nothing to merge")
    stats = FleetStats()
    for report in reports:
        stats.add(report.stats)
    parameters = dict(reports[0].parameters)
    parameters["merged_runs"] = len(reports)
    rates = [r.parameters.get("rate") for r in reports]
    if all(isinstance(rate, int | float) for rate in rates):
        parameters["rate"] = sum(rates)  # type: ignore[arg-type]
    if shape := _summed_shape([r.parameters.get("shape") or [] for r in reports]):
        parameters["shape"] = shape
    interrupted = next((r.interrupted for r in reports if r.interrupted), None)
    return replace(
        reports[0],
        stats=stats,
        duration_s=max(r.duration_s for r in reports),
        parameters=parameters,
        interrupted=interrupted,
        failures=(),
    )


def check_writable(target: str) -> None:
    """OSError naming ``target`` unless a file can be written there ('-' = stdout)."""
    if target == "-":
        return
    path = Path(target)
    if path.is_dir():
        raise IsADirectoryError(f"{target} is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{target}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PermissionError(f"{target} is not writable")


def write_json(value: Any, target: str) -> None:
    """Write ``value`` as indented JSON to ``target`` ('-' = stdout), whole or not at all."""
    text = json.dumps(value, indent=1) + "\n"
    if target == "-":
        sys.stdout.write(text)
        return
    path = Path(target)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 is for secrets; a report is not one
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
