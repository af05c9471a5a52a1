"""Backtest: replay journal-like rows, oldest first, against a candidate
ruleset and count per rule what it would have declined, flagged or shadowed.

Invariants:
* The replay keeps its own in-memory counters, fed as the switch would have
  fed them under the candidate: a row counts when the journal approved it
  and the candidate would not have declined it; an approved refund gives its
  amount back (``net_of_refunds`` caps).
* Nothing is written anywhere; the same rows and ruleset give the same report.
* The whole counter dict is the snapshot (no per-row key lookup) and rows feed
  it directly (``CompiledRuleset.replay``): that and the compiled closures are
  what make it fast (>= 20,000 rows/s).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from posp.risk.engine import CompiledRuleset
from posp.risk.inputs import CounterValue, RiskInput
from posp.risk.model import Action


@dataclass(frozen=True, slots=True)
class BacktestRow:
    """One journaled transaction: what the rules see, and whether it was approved."""

    inp: RiskInput
    approved: bool


@dataclass(slots=True)
class RuleTally:
    rule_id: str
    kind: str
    action: str
    declined: int = 0
    flagged: int = 0
    shadowed: int = 0


@dataclass(slots=True)
class BacktestReport:
    version: str
    rows: int = 0
    declined_rows: int = 0  # rows the candidate would have declined
    newly_declined: int = 0  # ... of which the journal had approved
    flagged_rows: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # process CPU time (what the rate is on a machine of one's own)
    by_rule: dict[str, RuleTally] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def rows_per_cpu_s(self) -> float:
        return self.rows / self.cpu_s if self.cpu_s > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "rows": self.rows,
            "declined_rows": self.declined_rows,
            "newly_declined": self.newly_declined,
            "flagged_rows": self.flagged_rows,
            "rows_per_s": round(self.rows_per_s),
            "rows_per_cpu_s": round(self.rows_per_cpu_s),
            "rules": [
                {
                    "rule": t.rule_id,
                    "kind": t.kind,
                    "action": t.action,
                    "declined": t.declined,
                    "flagged": t.flagged,
                    "shadowed": t.shadowed,
                }
                for t in self.by_rule.values()
            ],
        }


def run_backtest(ruleset: CompiledRuleset, rows: Iterable[BacktestRow]) -> BacktestReport:
    """Replay ``rows`` (oldest first) through ``ruleset``."""
    report = BacktestReport(ruleset.version)
    tallies = report.by_rule
    for rule in ruleset.rules:
        tallies[rule.id] = RuleTally(rule.id, rule.kind, rule.action.value)
    values: dict[str, CounterValue] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    collecting = gc.isenabled()
    gc.disable()  # the replay makes no reference cycles; pausing collection saves ~10 %
    try:
        _replay(ruleset, rows, values, report)
    finally:
        if collecting:
            gc.enable()
    report.elapsed_s = time.perf_counter() - started
    report.cpu_s = time.process_time() - cpu_started
    return report


def _replay(
    ruleset: CompiledRuleset,
    rows: Iterable[BacktestRow],
    values: dict[str, CounterValue],
    report: BacktestReport,
) -> None:
    tallies = report.by_rule
    for row in rows:
        report.rows += 1
        evaluation = ruleset.replay(row.inp, values, row.approved)
        flagged = False
        for decision in evaluation.decisions:
            tally = tallies[decision.rule_id]
            if decision.action is Action.DECLINE:
                tally.declined += 1
            elif decision.action is Action.FLAG:
                tally.flagged += 1
                flagged = True
            else:
                tally.shadowed += 1
        report.flagged_rows += flagged
        if evaluation.decline is not None:
            report.declined_rows += 1
            report.newly_declined += row.approved
