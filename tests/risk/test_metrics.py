"""Risk metrics: one series per rule and action, one per outcome, exposed
under the injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from posp.risk.metrics import RiskMetrics
from tests.risk.factory import card_day, fresh, inp, risk_step, rule, ruleset


async def test_decisions_and_outcomes_are_counted_by_rule_action_and_outcome() -> None:
    registry = CollectorRegistry()
    metrics = RiskMetrics(registry)
    rules = ruleset(card_day(limit_minor=1_000) + rule("round", "round_amount", unit_minor=500))
    counters = fresh()
    for amount in (100, 500, 1_000):
        evaluation, _ = await risk_step(rules, counters, inp(amount_minor=amount))
        metrics.observe(evaluation)
    assert metrics.evaluations.value(("pass",)) == 1
    assert metrics.evaluations.value(("flag",)) == 1
    assert metrics.evaluations.value(("decline",)) == 1
    assert metrics.decisions.value(("card-day", "decline")) == 1
    assert metrics.decisions.value(("round", "flag")) == 2
    text = generate_latest(registry).decode()
    assert 'posp_risk_decisions_total{action="flag",rule="round"} 2.0' in text
