"""Rule kinds over velocity counters: amount/count caps per subject and window,
interval between uses, months running of a card on a terminal, the night
window, fallbacks per terminal and merchant volume spikes.

Each ``compile_*`` returns a :class:`CounterParts`: the check over the snapshot,
the counter families it reads (which a counted approval feeds), and (used
only when the rule declines) the caps the store must hold atomically.

Invariants:
* A check compares the counter *after* this transaction: exactly at a limit
  passes, one fen (or one use) over fires.
* What a family feeds never depends on a rule's scope or action: counters are
  shared facts about a card, pair, merchant or terminal, only their use varies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posp.risk.compiled import Cap, Check, Fusion, GroupCheck, GroupHits, Hit, single
from posp.risk.facts import SUBJECT_PREFIX, Facts, Family
from posp.risk.inputs import ZERO
from posp.risk.model import (
    FallbackRule,
    IntervalRule,
    MerchantSpikeRule,
    NightRule,
    PairMonthsRule,
    RiskCode,
    VelocityRule,
)

_61 = RiskCode.OVER_AMOUNT_LIMIT
_65 = RiskCode.OVER_FREQUENCY_LIMIT


@dataclass(frozen=True, slots=True)
class CounterParts:
    check: Check
    families: tuple[Family, ...]
    caps: tuple[Cap, ...] = ()
    fusion: Fusion | None = None


def _velocity_group(prefix: str, window: str) -> Any:
    name = prefix + window

    def build(members: Sequence[tuple[int, Any]]) -> GroupCheck:
        rows = tuple((i, *params) for i, params in members)

        def check(f: Facts) -> GroupHits:
            key = f.keys.get(name) or f.window_key(prefix, window)
            value = f.snapshot.get(key, ZERO)
            amount = f.inp.amount_minor
            hits: GroupHits = None
            for i, max_amount, max_count, net in rows:
                hit: Hit
                if max_amount is not None and (
                    (used := value.amount_minor - (value.refunded_minor if net else 0)) + amount
                    > max_amount
                ):
                    hit = (
                        _61,
                        {
                            "used_minor": str(used),
                            "amount_minor": str(amount),
                            "limit_minor": str(max_amount),
                        },
                    )
                elif max_count is not None and value.txn_count + 1 > max_count:
                    hit = _65, {"count": str(value.txn_count + 1), "limit": str(max_count)}
                else:
                    continue
                if hits is None:
                    hits = []
                hits.append((i, hit))
            return hits

        return check

    return build


def compile_velocity(rule: VelocityRule, code: RiskCode | None) -> CounterParts:
    prefix, window, rid = SUBJECT_PREFIX[rule.subject.value], rule.window.value[0], rule.id
    max_amount, max_count, net = rule.max_amount_minor, rule.max_count, rule.net_of_refunds
    fusion = Fusion(
        ("velocity", prefix, window), (max_amount, max_count, net), _velocity_group(prefix, window)
    )
    family = Family("window", prefix, window)
    caps: list[Cap] = []
    if max_amount is not None:
        caps.append(Cap(family, "net" if net else "amount", max_amount, rid, code or _61))
    if max_count is not None:
        caps.append(Cap(family, "count", max_count, rid, code or _65))
    return CounterParts(single(fusion), (family,), tuple(caps), fusion)


def _interval_group(members: Sequence[tuple[int, Any]]) -> GroupCheck:
    rows = tuple(members)

    def check(f: Facts) -> GroupHits:
        value = f.snapshot.get(f.last_use_key(), ZERO)
        if value.txn_count <= 0 or value.last_at_s <= 0:
            return None
        since_s = f.inp.local_s - value.last_at_s
        hits: GroupHits = None
        for i, gap_s in rows:
            if since_s < gap_s:
                if hits is None:
                    hits = []
                hits.append((i, (None, {"since_s": str(since_s), "min_interval_s": str(gap_s)})))
        return hits

    return check


def compile_interval(rule: IntervalRule, code: RiskCode | None) -> CounterParts:
    gap_s, rid = rule.min_interval_s, rule.id
    fusion = Fusion(("interval",), gap_s, _interval_group)
    family = Family("last_use")
    cap = Cap(family, "gap", gap_s, rid, code or _65)
    return CounterParts(single(fusion), (family,), (cap,), fusion)


def _pair_months_group(members: Sequence[tuple[int, Any]]) -> GroupCheck:
    rows = tuple(members)
    deepest = max(most for _, most in rows)

    def check(f: Facts) -> GroupHits:
        running = 1  # this month: the transaction itself
        snapshot = f.snapshot
        for key in f.pair_months(deepest)[1:]:
            if snapshot.get(key, ZERO).txn_count <= 0:
                break
            running += 1
        hits: GroupHits = None
        for i, most in rows:
            seen = min(running, most + 1)  # a rule looks back ``most`` months only
            if seen > most:
                if hits is None:
                    hits = []
                hits.append((i, (None, {"months_running": str(seen), "max_months": str(most)})))
        return hits

    return check


def compile_pair_months(rule: PairMonthsRule, code: RiskCode | None) -> CounterParts:
    """(A pattern: no cap is held for it, so ``code`` is only the decision's.)"""
    most = rule.max_months
    fusion = Fusion(("pair_months",), most, _pair_months_group)
    return CounterParts(single(fusion), (Family("pair_month", depth=most),), (), fusion)


def _night_group(start: dt.time, end: dt.time) -> Any:
    def build(members: Sequence[tuple[int, Any]]) -> GroupCheck:
        rows = tuple((i, *params) for i, params in members)

        def check(f: Facts) -> GroupHits:
            if start <= f.clock < end:
                return None
            amount = f.inp.amount_minor
            used: int | None = None
            hits: GroupHits = None
            for i, most_single, total in rows:
                hit: Hit
                if most_single is not None and amount > most_single:
                    hit = (
                        None,
                        {
                            "amount_minor": str(amount),
                            "night_single_limit_minor": str(most_single),
                        },
                    )
                elif total is not None:
                    if used is None:
                        used = f.snapshot.get(f.night_key(start, end), ZERO).amount_minor
                    if used + amount <= total:
                        continue
                    hit = (
                        None,
                        {
                            "night_used_minor": str(used),
                            "amount_minor": str(amount),
                            "night_limit_minor": str(total),
                        },
                    )
                else:
                    continue
                if hits is None:
                    hits = []
                hits.append((i, hit))
            return hits

        return check

    return build


def compile_night(rule: NightRule, code: RiskCode | None) -> CounterParts:
    start, end, rid = rule.business_start, rule.business_end, rule.id
    most_single, total = rule.max_single_minor, rule.max_card_night_minor
    fusion = Fusion(("night", start, end), (most_single, total), _night_group(start, end))
    check = single(fusion)
    if total is None:
        return CounterParts(check, (), (), fusion)
    family = Family("night", start=start, end=end)  # fed only by night transactions
    cap = Cap(family, "amount", total, rid, code or RiskCode.SUSPECTED_FRAUD)
    return CounterParts(check, (family,), (cap,), fusion)


def _fallback_group(members: Sequence[tuple[int, Any]]) -> GroupCheck:
    rows = tuple(members)

    def check(f: Facts) -> GroupHits:
        if not f.inp.fallback:
            return None
        count = f.snapshot.get(f.fallback_key(), ZERO).txn_count + 1
        hits: GroupHits = None
        for i, most in rows:
            if count > most:
                if hits is None:
                    hits = []
                hits.append((i, (None, {"fallbacks_today": str(count), "max_per_day": str(most)})))
        return hits

    return check


def compile_fallback(rule: FallbackRule, code: RiskCode | None) -> CounterParts:
    most, rid = rule.max_per_day, rule.id
    fusion = Fusion(("fallback",), most, _fallback_group)
    family = Family("fallback")  # fed only by fallback transactions
    cap = Cap(family, "count", most, rid, code or RiskCode.FALLBACK_NOT_ALLOWED)
    return CounterParts(single(fusion), (family,), (cap,), fusion)


def _merchant_spike_group(days: int) -> Any:
    def build(members: Sequence[tuple[int, Any]]) -> GroupCheck:
        rows = tuple((i, *params) for i, params in members)

        def check(f: Facts) -> GroupHits:
            snapshot = f.snapshot
            today = snapshot.get(f.window_key("m", "d"), ZERO).amount_minor + f.inp.amount_minor
            baseline_total: int | None = None
            hits: GroupHits = None
            for i, factor, floor in rows:
                if today < floor:
                    continue
                if baseline_total is None:
                    baseline = f.merchant_days(days)[1:]
                    baseline_total = sum(snapshot.get(key, ZERO).amount_minor for key in baseline)
                if baseline_total <= 0:
                    return None  # no history to compare with: a new shop is not a spike
                mean = baseline_total / days
                if today <= factor * mean:
                    continue
                if hits is None:
                    hits = []
                hit: Hit = None, {"today_minor": str(today), "baseline_mean_minor": str(int(mean))}
                hits.append((i, hit))
            return hits

        return check

    return build


def compile_merchant_spike(rule: MerchantSpikeRule, code: RiskCode | None) -> CounterParts:
    """(A pattern: no cap is held for it, so ``code`` is only the decision's.)"""
    days = rule.baseline_days
    fusion = Fusion(
        ("merchant_spike", days),
        (rule.factor, rule.min_amount_minor),
        _merchant_spike_group(days),
    )
    return CounterParts(single(fusion), (Family("merchant_days", depth=days),), (), fusion)
