"""The compiled ruleset and its evaluation.

Use (the pipeline's risk step)::

    keys = ruleset.counter_keys(inp)
    snapshot = await counters.snapshot(keys)
    evaluation = ruleset.evaluate(inp, snapshot)          # pure
    if evaluation.decline: answer evaluation.decline.code
    result = await counters.check_and_add(evaluation.hold)  # reserve before the network
    if not result.applied: answer evaluation.refused_by(result).code
    ... not approved by the network -> counters.apply(release(evaluation.hold))
    void / reversal later          -> counters.apply(release(the stored hold))
    refund                         -> counters.apply(ruleset.refund_adds(refund_input))

Invariants:
* ``evaluate`` is a pure function of (input, snapshot): no I/O, no clock.
* Rules run in file order; the first *declining* rule's decision gives the
  answer, every firing rule (flag, shadow, later declines) is recorded.
* A shadow rule never declines and contributes no cap to the hold.
* The hold feeds each counter once however many rules use it, and carries the
  tightest cap of every in-scope declining rule on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from posp.risk.compiled import Cap, CompiledRule
from posp.risk.counters import AddResult, CounterAdd
from posp.risk.facts import Facts, Feed
from posp.risk.inputs import (
    EMPTY_SNAPSHOT,
    ZERO,
    CounterSnapshot,
    CounterValue,
    Decision,
    RiskInput,
)
from posp.risk.model import Action


@dataclass(frozen=True, slots=True)
class Evaluation:
    ruleset_version: str
    decisions: tuple[Decision, ...]
    decline: Decision | None  # the decision that refuses the transaction, if any
    hold: tuple[CounterAdd, ...]  # what to check-and-add when not declined
    caps: tuple[Cap, ...]

    @property
    def flagged(self) -> bool:
        return any(d.action is Action.FLAG for d in self.decisions)

    def refused_by(self, result: AddResult) -> Decision:
        """The decision for a hold the store refused (another instance used the
        last of a limit between the snapshot and the add)."""
        adds = {add.key: add for add in self.hold}
        for cap in self.caps:
            before = result.before.get(cap.key, ZERO)
            add = adds[cap.key]
            if not _cap_holds(cap, add, before):
                return Decision(
                    cap.rule_id,
                    self.ruleset_version,
                    "counter",
                    Action.DECLINE,
                    cap.code,
                    {"counter": cap.field, "limit": str(cap.limit), "race": "lost"},
                )
        # The store's "before" may be newer than the refusal (SQLite reads it after):
        # name the first cap of the hold, the one the snapshot check could not see.
        first = self.caps[0]
        return Decision(first.rule_id, self.ruleset_version, "counter", Action.DECLINE, first.code)


def _cap_holds(cap: Cap, add: CounterAdd, before: CounterValue) -> bool:
    return _tighten(add.uncapped(), cap).holds_on(before)


class CompiledRuleset:
    """A ruleset ready to evaluate; immutable, safe to share between tasks."""

    def __init__(
        self,
        version: str,
        rollover: dt.time,
        counted_txn_types: frozenset[str],
        rules: Sequence[CompiledRule],
    ) -> None:
        self.version = version
        self.rollover = rollover
        self.counted_txn_types = counted_txn_types
        self.rules = tuple(rules)
        self._feeders = tuple(r for r in self.rules if r.uses_counters)
        types = {t for r in self.rules for t in r.txn_types}
        self._by_type = {t: tuple(r for r in self.rules if t in r.txn_types) for t in types}

    def applicable(self, inp: RiskInput) -> list[CompiledRule]:
        return [r for r in self._by_type.get(inp.txn_type, ()) if r.in_scope(inp)]

    def counter_keys(self, inp: RiskInput) -> tuple[str, ...]:
        """Every counter the rules applying to ``inp`` read (for one snapshot read)."""
        facts = Facts(inp, self.rollover, EMPTY_SNAPSHOT)
        keys: dict[str, None] = {}
        for rule in self.applicable(inp):
            if rule.uses_counters:
                keys.update(dict.fromkeys(rule.reads(facts)))
        return tuple(keys)

    def evaluate(self, inp: RiskInput, snapshot: CounterSnapshot = EMPTY_SNAPSHOT) -> Evaluation:
        facts = Facts(inp, self.rollover, snapshot)
        version = self.version
        decisions: list[Decision] = []
        decline: Decision | None = None
        declining: list[CompiledRule] = []
        for rule in self._by_type.get(inp.txn_type, ()):
            if (
                rule.scope_attr is not None
                and getattr(inp, rule.scope_attr) not in rule.scope_values
            ):
                continue
            if rule.action is Action.DECLINE:
                declining.append(rule)
            hit = rule.check(facts)
            if hit is None:
                continue
            decision = Decision(
                rule.id, version, rule.kind, rule.action, rule.code_for(hit), hit[1]
            )
            decisions.append(decision)
            if decline is None and rule.action is Action.DECLINE:
                decline = decision
        if decline is not None or inp.txn_type not in self.counted_txn_types:
            return Evaluation(version, tuple(decisions), decline, (), ())
        caps = tuple(cap for rule in declining for cap in rule.caps(facts))
        return Evaluation(version, tuple(decisions), None, self._hold(facts, caps), caps)

    def _hold(self, facts: Facts, caps: tuple[Cap, ...]) -> tuple[CounterAdd, ...]:
        feeds: dict[str, Feed] = {}
        for rule in self._feeders:
            for feed in rule.feeds(facts):
                feeds.setdefault(feed.key, feed)
        adds = {
            key: CounterAdd(key, f.amount_minor, f.count, 0, f.at_s, f.expires_on)
            for key, f in feeds.items()
        }
        for cap in caps:
            adds[cap.key] = _tighten(adds[cap.key], cap)
        return tuple(adds.values())

    def refund_adds(self, inp: RiskInput) -> tuple[CounterAdd, ...]:
        """A refund's amount given back on the refund's own windows of the amount
        counters (what ``net_of_refunds`` caps subtract)."""
        facts = Facts(inp, self.rollover, EMPTY_SNAPSHOT)
        adds: dict[str, CounterAdd] = {}
        for rule in self._feeders:
            if rule.kind == "velocity":
                for feed in rule.feeds(facts):
                    adds[feed.key] = CounterAdd(
                        feed.key, 0, 0, inp.amount_minor, feed.at_s, feed.expires_on
                    )
        return tuple(adds.values())


def _tighten(add: CounterAdd, cap: Cap) -> CounterAdd:
    if cap.field == "amount" and (add.max_amount_minor is None or cap.limit < add.max_amount_minor):
        return replace(add, max_amount_minor=cap.limit)
    if cap.field == "net" and (add.max_net_minor is None or cap.limit < add.max_net_minor):
        return replace(add, max_net_minor=cap.limit)
    if cap.field == "count" and (add.max_count is None or cap.limit < add.max_count):
        return replace(add, max_count=cap.limit)
    if cap.field == "gap" and (add.min_gap_s is None or cap.limit > add.min_gap_s):
        return replace(add, min_gap_s=cap.limit)
    return add


def release(hold: Sequence[CounterAdd]) -> tuple[CounterAdd, ...]:
    """The adds that give a hold back (void, reversal, or the network said no)."""
    return tuple(add.negated() for add in hold)
