"""The compiled ruleset and its evaluation.

Use (the pipeline's risk step)::

    prepared = ruleset.prepare(inp)                       # the counter keys, once
    snapshot = await counters.snapshot(prepared.keys)
    evaluation = ruleset.evaluate_prepared(prepared, snapshot)   # pure
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
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from posp.risk.compiled import Cap, Check, CompiledRule, Fusion, GroupCheck, Hit
from posp.risk.counters import AddResult, CounterAdd
from posp.risk.facts import Facts, Family
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
class Prepared:
    facts: Facts
    keys: tuple[str, ...]


#: Per counter family, the tightest cap of each field.
CapTable = dict[Family, dict[str, Cap]]
Limits = tuple[int | None, int | None, int | None, int | None]  # amount, net, count, gap
#: Per counter family (by its index in ``CompiledRuleset.families``), its
#: CounterAdd limits and the caps behind them.
LimitTable = list[tuple[Limits, tuple[Cap, ...]]]


@dataclass(frozen=True, slots=True)
class Evaluation:
    ruleset_version: str
    decisions: tuple[Decision, ...]
    decline: Decision | None  # the decision that refuses the transaction, if any
    hold: tuple[CounterAdd, ...]  # what to check-and-add when not declined
    caps: tuple[tuple[str, Cap], ...]  # (counter key, cap) of every limit in the hold

    @property
    def flagged(self) -> bool:
        return any(d.action is Action.FLAG for d in self.decisions)

    def refused_by(self, result: AddResult) -> Decision:
        """The decision for a hold the store refused (another instance used the
        last of a limit between the snapshot and the add)."""
        if not self.caps:
            raise ValueError("a hold without caps cannot be refused")  # a store bug
        adds = {add.key: add for add in self.hold}
        broken = next(
            (
                (key, cap)
                for key, cap in self.caps
                if not _with_cap(adds[key].uncapped(), cap).holds_on(result.before.get(key, ZERO))
            ),
            None,
        )
        # The store's "before" may be newer than the refusal (SQLite reads it after):
        # then name the hold's first cap, which the snapshot check could not see.
        _, cap = broken or self.caps[0]
        triggered = {"counter": cap.field, "limit": str(cap.limit), "race": "lost"}
        return Decision(
            cap.rule_id, self.ruleset_version, "counter", Action.DECLINE, cap.code, triggered
        )


def _with_cap(add: CounterAdd, cap: Cap) -> CounterAdd:
    if cap.field == "amount":
        return add._replace(max_amount_minor=cap.limit)
    if cap.field == "net":
        return add._replace(max_net_minor=cap.limit)
    if cap.field == "count":
        return add._replace(max_count=cap.limit)
    return add._replace(min_gap_s=cap.limit)


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
        self.families = _merged_families(self.rules)
        types = {t for r in self.rules for t in r.txn_types}
        # The caps of unscoped declining rules merged once per type; a scope's
        # caps are merged into a copy once per plan (``_plan``).
        self._static_caps = {
            t: _cap_table(
                cap for r in self.rules if t in r.txn_types and not r.scope_attr for cap in r.caps
            )
            for t in types
        }
        self._uncapped: LimitTable = [_UNCAPPED] * len(self.families)
        #: The RiskInput attributes some rule's scope tests (a plan's key).
        self._scope_attrs = tuple(sorted({r.scope_attr for r in self.rules if r.scope_attr}))
        #: Per (txn type, scope attribute values): the rules in scope, in file
        #: order, as (rule, check), and the hold's limits — built on first use,
        #: so an evaluation runs no scope test and merges no cap.
        self._plans: dict[tuple[str, ...], _Plan] = {}

    def _plan(self, inp: RiskInput) -> _Plan:
        key = (inp.txn_type, *[getattr(inp, attr) for attr in self._scope_attrs])
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()  # bounded: scopes seen are few, terminals many
            plan = self._plans[key] = self._build_plan(inp)
        return plan

    def _build_plan(self, inp: RiskInput) -> _Plan:
        txn_type = inp.txn_type
        in_scope = [
            r
            for r in self.rules
            if txn_type in r.txn_types
            and (r.scope_attr is None or getattr(inp, r.scope_attr) in r.scope_values)
        ]
        scoped_caps = [cap for r in in_scope if r.scope_attr for cap in r.caps]
        static = self._static_caps.get(txn_type, {})
        table = _cap_table(scoped_caps, {f: dict(c) for f, c in static.items()})
        limits = _limit_table(table, self.families) if table else self._uncapped
        # Rules that fuse, by key (each group one closure); the rest alone.
        groups: dict[Hashable, list[tuple[int, Fusion]]] = {}
        for index, rule in enumerate(in_scope):
            if rule.fusion is not None:
                groups.setdefault(rule.fusion.key, []).append((index, rule.fusion))
        singles: list[tuple[int, Check]] = []
        fused: list[GroupCheck] = []
        for index, rule in enumerate(in_scope):
            if rule.fusion is None or len(groups[rule.fusion.key]) == 1:
                singles.append((index, rule.check))
        for members in groups.values():
            if len(members) > 1:
                fused.append(members[0][1].build([(i, fusion.params) for i, fusion in members]))
        return _Plan(tuple(in_scope), tuple(singles), tuple(fused), limits)

    def counter_keys(self, inp: RiskInput) -> tuple[str, ...]:
        """Every counter the rules may read for ``inp`` (one snapshot read)."""
        return self.prepare(inp).keys

    def prepare(self, inp: RiskInput) -> Prepared:
        """The counter keys of ``inp``, and its facts for :meth:`evaluate_prepared`
        (the keys are built once for both).  All families of the ruleset are read,
        not only in-scope ones: a few extra keys in one read cost less than
        sorting out scopes twice."""
        facts = Facts(inp, self.rollover, EMPTY_SNAPSHOT)
        keys: list[str] = []
        for family in self.families:
            keys.extend(facts.reads(family))
        # Families share keys (a merchant's day: its cap and the spike's baseline).
        return Prepared(facts, tuple(dict.fromkeys(keys)))

    def evaluate(self, inp: RiskInput, snapshot: CounterSnapshot = EMPTY_SNAPSHOT) -> Evaluation:
        """The decisions on ``inp`` given the counters in ``snapshot`` (pure)."""
        return self._evaluate(Facts(inp, self.rollover, snapshot))

    def evaluate_prepared(self, prepared: Prepared, snapshot: CounterSnapshot) -> Evaluation:
        """:meth:`evaluate` for an input :meth:`prepare` has seen (once per Prepared)."""
        prepared.facts.snapshot = snapshot
        return self._evaluate(prepared.facts)

    def replay(self, inp: RiskInput, values: dict[str, CounterValue], approved: bool) -> Evaluation:
        """One backtest row: evaluate against ``values`` (every counter so far) and,
        when the row counted (approved then, not declined now), feed ``values``
        directly — the hold and its caps are skipped, the snapshot check is exact
        here because nothing else changes ``values``."""
        facts = Facts(inp, self.rollover, values)
        evaluation = self._evaluate(facts, with_hold=False)
        if not approved or evaluation.decline is not None:
            return evaluation
        if inp.txn_type in self.counted_txn_types:
            at_s = facts.local_s
            for key, amount_minor in facts.fed_amounts(self.families).items():
                old = values.get(key)
                if old is None:
                    values[key] = CounterValue(amount_minor, 1, 0, max(0, at_s))
                else:
                    amount, count, refunded, last_at_s = old
                    values[key] = CounterValue(
                        amount + amount_minor, count + 1, refunded, max(last_at_s, at_s)
                    )
        elif inp.txn_type == "refund":
            for add in self.refund_adds(inp):
                values[add.key] = add.applied_to(values.get(add.key, ZERO))
        return evaluation

    def _evaluate(self, facts: Facts, *, with_hold: bool = True) -> Evaluation:
        inp, version = facts.inp, self.version
        decisions: list[Decision] = []
        decline: Decision | None = None
        plan = self._plan(inp)
        hits: list[tuple[int, Hit]] = []
        for index, check in plan.singles:
            hit = check(facts)
            if hit is not None:
                hits.append((index, hit))
        for group in plan.groups:
            found = group(facts)
            if found:
                hits.extend(found)
        if hits:
            if len(hits) > 1:
                hits.sort(key=_first)  # file order, whichever closure found them
            rules = plan.rules
            for index, hit in hits:
                rule = rules[index]
                decision = Decision(
                    rule.id, version, rule.kind, rule.action, rule.code_for(hit), hit[1]
                )
                decisions.append(decision)
                if decline is None and rule.action is Action.DECLINE:
                    decline = decision
        counted = with_hold and inp.txn_type in self.counted_txn_types
        if decline is not None or not counted:
            return Evaluation(version, tuple(decisions), decline, (), ())
        hold, held_caps = self._hold(facts, plan.limits)
        return Evaluation(version, tuple(decisions), None, hold, held_caps)

    def _hold(
        self, facts: Facts, table: LimitTable
    ) -> tuple[tuple[CounterAdd, ...], tuple[tuple[str, Cap], ...]]:
        """One add per counter fed (a use, and the amount where the family counts
        money), with the tightest cap of each field any in-scope declining rule
        puts on its family; and those caps by key (for :meth:`Evaluation.refused_by`)."""
        adds: dict[str, CounterAdd] = {}
        held: list[tuple[str, Cap]] = []
        for family, (limits, caps) in zip(self.families, table, strict=True):
            for key, amount_minor, at_s, expires_on in facts.feeds(family):
                if key in adds:
                    continue
                adds[key] = CounterAdd(key, amount_minor, 1, 0, at_s, expires_on, *limits)
                if caps:
                    held.extend([(key, cap) for cap in caps])
        return tuple(adds.values()), tuple(held)

    def refund_adds(self, inp: RiskInput) -> tuple[CounterAdd, ...]:
        """A refund's amount given back on the refund's own windows of the amount
        counters (what ``net_of_refunds`` caps subtract)."""
        facts = Facts(inp, self.rollover, EMPTY_SNAPSHOT)
        adds: list[CounterAdd] = []
        for family in self.families:
            if family.name == "window":
                for feed in facts.feeds(family):
                    adds.append(
                        CounterAdd(feed.key, 0, 0, inp.amount_minor, feed.at_s, feed.expires_on)
                    )
        return tuple(adds)


_UNCAPPED: tuple[Limits, tuple[Cap, ...]] = ((None, None, None, None), ())
#: Plans kept per ruleset before the cache starts again (one per scope seen).
_MAX_PLANS = 4096


class _Plan(NamedTuple):
    rules: tuple[CompiledRule, ...]  # in scope, file order (a hit's index)
    singles: tuple[tuple[int, Check], ...]  # rules evaluated alone, with their index
    groups: tuple[GroupCheck, ...]  # fused rules, one closure per group
    limits: LimitTable


def _first(hit: tuple[int, Hit]) -> int:
    return hit[0]


def _limit_table(table: CapTable, families: tuple[Family, ...]) -> LimitTable:
    """Each family's caps as the CounterAdd cap fields (amount, net, count, gap),
    in the order of ``families`` (a list index is cheaper than hashing a Family)."""
    limits: LimitTable = []
    for family in families:
        caps = table.get(family)
        if not caps:
            limits.append(_UNCAPPED)
            continue
        amount, net, count, gap = (caps.get(f) for f in ("amount", "net", "count", "gap"))
        fields = (
            amount.limit if amount else None,
            net.limit if net else None,
            count.limit if count else None,
            gap.limit if gap else None,
        )
        limits.append((fields, tuple(caps.values())))
    return limits


def _cap_table(caps: Iterable[Cap], table: CapTable | None = None) -> CapTable:
    """``caps`` merged into ``table``: per family and field the tightest."""
    merged: CapTable = {} if table is None else table
    for cap in caps:
        fields = merged.setdefault(cap.family, {})
        current = fields.get(cap.field)
        if current is None or (
            cap.limit > current.limit if cap.field == "gap" else cap.limit < current.limit
        ):
            fields[cap.field] = cap
    return merged


def _merged_families(rules: Sequence[CompiledRule]) -> tuple[Family, ...]:
    """Each family once; of the look-back families the deepest."""
    merged: dict[Family, None] = {}
    deepest: dict[str, Family] = {}
    for rule in rules:
        for family in rule.families:
            if family.depth:
                known = deepest.get(family.name)
                if known is None or family.depth > known.depth:
                    deepest[family.name] = family
            else:
                merged[family] = None
    return (*merged, *deepest.values())


def release(hold: Sequence[CounterAdd]) -> tuple[CounterAdd, ...]:
    """The adds that give a hold back (void, reversal, or the network said no)."""
    return tuple(add.negated() for add in hold)
