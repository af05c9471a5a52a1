"""Prometheus instruments of the risk step, against an injected registry.

==============================  =======  ============  =====================================
metric                          type     labels        meaning
==============================  =======  ============  =====================================
posp_risk_decisions_total       counter  rule, action  a rule fired (decline, flag, shadow)
posp_risk_evaluations_total     counter  outcome       pass, flag, decline, race (the store
                                                       refused the hold)
posp_risk_legacy_counter_rows   gauge                  counters keyed as before migration
                                                       0033 (up to 1,000): an older posp
                                                       is still writing; 0 when none
==============================  =======  ============  =====================================

Invariants: labels come from closed sets — rule ids are the ruleset's own
(short words validated at load), actions and outcomes are enums; never a
card, terminal or amount.  Counting is a plain dict increment (posp.tally).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from posp.risk.engine import Evaluation
from posp.risk.inputs import Decision
from posp.tally import TallyCounter


class RiskMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.decisions = TallyCounter(
            "posp_risk_decisions", "risk rules fired", ("rule", "action"), registry
        )
        self.evaluations = TallyCounter(
            "posp_risk_evaluations", "risk evaluations by outcome", ("outcome",), registry
        )
        self._legacy = Gauge(  # registry None: kept, not exported (as TallyCounter)
            "posp_risk_legacy_counter_rows",
            "risk counters keyed as before migration 0033 (an older posp still writing)",
            registry=registry,
        )

    def legacy_counter_rows(self, rows: int) -> None:
        """The last count of counters keyed as before migration 0033."""
        self._legacy.set(rows)

    def observe(self, evaluation: Evaluation) -> None:
        """Count an evaluation and every decision in it."""
        for decision in evaluation.decisions:
            self.decisions.inc((decision.rule_id, decision.action.value))
        if evaluation.decline is not None:
            outcome = "decline"
        else:
            outcome = "flag" if evaluation.flagged else "pass"
        self.evaluations.inc((outcome,))

    def observe_refusal(self, decision: Decision) -> None:
        """A hold the store refused after the evaluation passed (a lost race)."""
        self.decisions.inc((decision.rule_id, decision.action.value))
        self.evaluations.inc(("race",))
