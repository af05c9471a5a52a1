"""Inputs and small rulesets for the risk tests, and the pipeline's risk step
as the lead will wire it (snapshot -> evaluate -> atomic hold), in memory."""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap

import tomli_w

from posp.risk.counters import InMemoryCounters, VelocityCounters
from posp.risk.engine import CompiledRuleset, Evaluation
from posp.risk.inputs import Decision, RiskInput
from posp.risk.ruleset import compile_ruleset, parse_ruleset

CARD = "a1" * 16
OTHER_CARD = "b2" * 16
NOON = dt.datetime(2026, 12, 3, 12, 0, 0)  # a Thursday, inside business hours

BASE = RiskInput(
    txn_type="purchase",
    amount_minor=10_000,
    card_hash=CARD,
    bin="622588",
    terminal_id="10000001",
    merchant_id="898290054110001",  # F42 digits 4-7: region 2900
    mcc="5411",
    local_time=NOON,
)


def inp(**changes: object) -> RiskInput:
    return dataclasses.replace(BASE, **changes)  # type: ignore[arg-type]


def ruleset(rules_toml: str, *, version: str = "t1", header: str = "") -> CompiledRuleset:
    """A compiled ruleset from the TOML of its ``[[rules]]`` tables."""
    text = f'version = "{version}"\n{header}\n' + textwrap.dedent(rules_toml)
    return compile_ruleset(parse_ruleset(text, source="test"))


def rule(rule_id: str, kind: str, **params: object) -> str:
    """One ``[[rules]]`` table as TOML (tables inline, so rules concatenate)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in {"id": rule_id, "kind": kind, **params}.items()]
    return "[[rules]]\n" + "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip()


def card_day(rule_id: str = "card-day", *, limit_minor: int = 10_000_000, **params: object) -> str:
    """A card's business-day amount cap (declining unless ``action`` says otherwise)."""
    params = {"action": "decline", "subject": "card", "window": "day", **params}
    return rule(rule_id, "velocity", max_amount_minor=limit_minor, **params)


async def risk_step(
    rules: CompiledRuleset, counters: VelocityCounters, txn: RiskInput
) -> tuple[Evaluation, Decision | None]:
    """What the pipeline does: the decision that declines (or None = approved and held)."""
    prepared = rules.prepare(txn)
    evaluation = rules.evaluate_prepared(prepared, await counters.snapshot(prepared.keys))
    if evaluation.decline is not None:
        return evaluation, evaluation.decline
    result = await counters.check_and_add(evaluation.hold)
    if not result.applied:
        return evaluation, evaluation.refused_by(result)
    return evaluation, None


def fired(evaluation: Evaluation, rule_id: str) -> Decision | None:
    return next((d for d in evaluation.decisions if d.rule_id == rule_id), None)


def fresh() -> InMemoryCounters:
    return InMemoryCounters()
