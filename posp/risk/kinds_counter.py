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

from dataclasses import dataclass

from posp.risk.compiled import Cap, Check, Hit
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


def compile_velocity(rule: VelocityRule, code: RiskCode | None) -> CounterParts:
    prefix, window, rid = SUBJECT_PREFIX[rule.subject.value], rule.window.value[0], rule.id
    max_amount, max_count, net = rule.max_amount_minor, rule.max_count, rule.net_of_refunds

    name = prefix + window

    def check(f: Facts) -> Hit | None:
        key = f.keys.get(name) or f.window_key(prefix, window)
        value = f.snapshot.get(key, ZERO)
        if max_amount is not None:
            used = value.amount_minor - (value.refunded_minor if net else 0)
            if used + f.inp.amount_minor > max_amount:
                return _61, {
                    "used_minor": str(used),
                    "amount_minor": str(f.inp.amount_minor),
                    "limit_minor": str(max_amount),
                }
        if max_count is not None and value.txn_count + 1 > max_count:
            return _65, {"count": str(value.txn_count + 1), "limit": str(max_count)}
        return None

    family = Family("window", prefix, window)
    caps: list[Cap] = []
    if max_amount is not None:
        caps.append(Cap(family, "net" if net else "amount", max_amount, rid, code or _61))
    if max_count is not None:
        caps.append(Cap(family, "count", max_count, rid, code or _65))
    return CounterParts(check, (family,), tuple(caps))


def compile_interval(rule: IntervalRule, code: RiskCode | None) -> CounterParts:
    gap_s, rid = rule.min_interval_s, rule.id

    def check(f: Facts) -> Hit | None:
        value = f.snapshot.get(f.last_use_key(), ZERO)
        if value.txn_count <= 0 or value.last_at_s <= 0:
            return None
        since_s = f.inp.local_s - value.last_at_s
        if since_s >= gap_s:
            return None
        return None, {"since_s": str(since_s), "min_interval_s": str(gap_s)}

    family = Family("last_use")
    return CounterParts(check, (family,), (Cap(family, "gap", gap_s, rid, code or _65),))


def compile_pair_months(rule: PairMonthsRule, code: RiskCode | None) -> CounterParts:
    """(A pattern: no cap is held for it, so ``code`` is only the decision's.)"""
    most = rule.max_months

    def check(f: Facts) -> Hit | None:
        running = 1  # this month: the transaction itself
        snapshot = f.snapshot
        for key in f.pair_months(most)[1:]:
            if snapshot.get(key, ZERO).txn_count <= 0:
                break
            running += 1
        if running <= most:
            return None
        return None, {"months_running": str(running), "max_months": str(most)}

    return CounterParts(check, (Family("pair_month", depth=most),))


def compile_night(rule: NightRule, code: RiskCode | None) -> CounterParts:
    start, end, rid = rule.business_start, rule.business_end, rule.id
    single, total = rule.max_single_minor, rule.max_card_night_minor

    def check(f: Facts) -> Hit | None:
        if start <= f.clock < end:
            return None
        amount = f.inp.amount_minor
        if single is not None and amount > single:
            return None, {"amount_minor": str(amount), "night_single_limit_minor": str(single)}
        if total is not None:
            used = f.snapshot.get(f.night_key(start, end), ZERO).amount_minor
            if used + amount > total:
                return None, {
                    "night_used_minor": str(used),
                    "amount_minor": str(amount),
                    "night_limit_minor": str(total),
                }
        return None

    if total is None:
        return CounterParts(check, ())
    family = Family("night", start=start, end=end)  # fed only by night transactions
    cap = Cap(family, "amount", total, rid, code or RiskCode.SUSPECTED_FRAUD)
    return CounterParts(check, (family,), (cap,))


def compile_fallback(rule: FallbackRule, code: RiskCode | None) -> CounterParts:
    most, rid = rule.max_per_day, rule.id

    def check(f: Facts) -> Hit | None:
        if not f.inp.fallback:
            return None
        count = f.snapshot.get(f.fallback_key(), ZERO).txn_count + 1
        if count <= most:
            return None
        return None, {"fallbacks_today": str(count), "max_per_day": str(most)}

    family = Family("fallback")  # fed only by fallback transactions
    cap = Cap(family, "count", most, rid, code or RiskCode.FALLBACK_NOT_ALLOWED)
    return CounterParts(check, (family,), (cap,))


def compile_merchant_spike(rule: MerchantSpikeRule, code: RiskCode | None) -> CounterParts:
    """(A pattern: no cap is held for it, so ``code`` is only the decision's.)"""
    factor, days, floor = rule.factor, rule.baseline_days, rule.min_amount_minor

    def check(f: Facts) -> Hit | None:
        snapshot = f.snapshot
        today = snapshot.get(f.window_key("m", "d"), ZERO).amount_minor + f.inp.amount_minor
        if today < floor:
            return None
        baseline = f.merchant_days(days)[1:]
        baseline_total = sum(snapshot.get(key, ZERO).amount_minor for key in baseline)
        if baseline_total <= 0:
            return None  # no history to compare with: a new shop is not a spike
        mean = baseline_total / days
        if today <= factor * mean:
            return None
        return None, {"today_minor": str(today), "baseline_mean_minor": str(int(mean))}

    return CounterParts(check, (Family("merchant_days", depth=days),))
