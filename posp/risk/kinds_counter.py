"""Rule kinds over velocity counters: amount/count caps per subject and window,
interval between uses, months running of a card on a terminal, the night
window, fallbacks per terminal and merchant volume spikes.

Each ``compile_*`` returns a :class:`CounterParts`: the check over the snapshot,
the counters it reads, what an approved counted transaction feeds, and (used
only when the rule declines) the caps the store must hold atomically.

Invariants:
* A check compares the counter *after* this transaction: exactly at a limit
  passes, one fen (or one use) over fires.
* ``feeds`` never depends on the rule's scope or action: counters are shared
  facts about a card, pair, merchant or terminal, only their use varies.
"""

from __future__ import annotations

from dataclasses import dataclass

from posp.risk.compiled import Cap, Caps, Check, Feeds, Hit, Keys
from posp.risk.facts import KEEP_MONTH_DAYS, Facts, Feed, is_night
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
    reads: Keys
    feeds: Feeds
    caps: Caps


def compile_velocity(rule: VelocityRule, code: RiskCode | None) -> CounterParts:
    subject, window, rid = rule.subject.value, rule.window.value, rule.id
    max_amount, max_count, net = rule.max_amount_minor, rule.max_count, rule.net_of_refunds

    def key(f: Facts) -> str:
        return f.window_key(subject, window)

    def check(f: Facts) -> Hit | None:
        value = f.value(key(f))
        if max_amount is not None:
            used = value.amount_minor - (value.refunded_minor if net else 0)
            if used + f.inp.amount_minor > max_amount:
                return _61, {
                    "used_minor": str(used),
                    "amount_minor": str(f.inp.amount_minor),
                    "limit_minor": str(max_amount),
                }
        if max_count is not None and value.count + 1 > max_count:
            return _65, {"count": str(value.count + 1), "limit": str(max_count)}
        return None

    def caps(f: Facts) -> tuple[Cap, ...]:
        k = key(f)
        found: list[Cap] = []
        if max_amount is not None:
            found.append(Cap(k, "net" if net else "amount", max_amount, rid, code or _61))
        if max_count is not None:
            found.append(Cap(k, "count", max_count, rid, code or _65))
        return tuple(found)

    return CounterParts(check, lambda f: (key(f),), lambda f: (f.feed(key(f)),), caps)


def compile_interval(rule: IntervalRule, code: RiskCode | None) -> CounterParts:
    gap_s, rid = rule.min_interval_s, rule.id

    def check(f: Facts) -> Hit | None:
        value = f.value(f.last_use_key())
        if value.count <= 0 or value.last_at_s <= 0:
            return None
        since_s = f.inp.local_s - value.last_at_s
        if since_s >= gap_s:
            return None
        return None, {"since_s": str(since_s), "min_interval_s": str(gap_s)}

    def caps(f: Facts) -> tuple[Cap, ...]:
        return (Cap(f.last_use_key(), "gap", gap_s, rid, code or _65),)

    return CounterParts(
        check,
        lambda f: (f.last_use_key(),),
        lambda f: (f.feed(f.last_use_key(), amount=False),),
        caps,
    )


def compile_pair_months(rule: PairMonthsRule) -> CounterParts:
    most = rule.max_months

    def reads(f: Facts) -> tuple[str, ...]:
        return tuple(f.pair_month_key(back) for back in range(most + 1))

    def check(f: Facts) -> Hit | None:
        running = 1  # this month: the transaction itself
        for back in range(1, most + 1):
            if f.value(f.pair_month_key(back)).count <= 0:
                break
            running += 1
        if running <= most:
            return None
        return None, {"months_running": str(running), "max_months": str(most)}

    def feeds(f: Facts) -> tuple[Feed, ...]:
        return (f.feed(f.pair_month_key(), amount=False, keep_days=KEEP_MONTH_DAYS),)

    return CounterParts(check, reads, feeds, lambda f: ())


def compile_night(rule: NightRule, code: RiskCode | None) -> CounterParts:
    start, end, rid = rule.business_start, rule.business_end, rule.id
    single, total = rule.max_single_minor, rule.max_card_night_minor
    window = f"{start.hour:02d}{start.minute:02d}{end.hour:02d}{end.minute:02d}"

    def night(f: Facts) -> bool:
        return is_night(f.inp.local_time.time(), start, end)

    def check(f: Facts) -> Hit | None:
        if not night(f):
            return None
        amount = f.inp.amount_minor
        if single is not None and amount > single:
            return None, {"amount_minor": str(amount), "night_single_limit_minor": str(single)}
        if total is not None:
            used = f.value(f.night_key(window)).amount_minor
            if used + amount > total:
                return None, {
                    "night_used_minor": str(used),
                    "amount_minor": str(amount),
                    "night_limit_minor": str(total),
                }
        return None

    def reads(f: Facts) -> tuple[str, ...]:
        return (f.night_key(window),) if total is not None and night(f) else ()

    def feeds(f: Facts) -> tuple[Feed, ...]:
        return (f.feed(f.night_key(window)),) if total is not None and night(f) else ()

    def caps(f: Facts) -> tuple[Cap, ...]:
        if total is None or not night(f):
            return ()
        return (Cap(f.night_key(window), "amount", total, rid, code or RiskCode.SUSPECTED_FRAUD),)

    return CounterParts(check, reads, feeds, caps)


def compile_fallback(rule: FallbackRule, code: RiskCode | None) -> CounterParts:
    most, rid = rule.max_per_day, rule.id

    def check(f: Facts) -> Hit | None:
        if not f.inp.fallback:
            return None
        count = f.value(f.fallback_key()).count + 1
        if count <= most:
            return None
        return None, {"fallbacks_today": str(count), "max_per_day": str(most)}

    def reads(f: Facts) -> tuple[str, ...]:
        return (f.fallback_key(),) if f.inp.fallback else ()

    def feeds(f: Facts) -> tuple[Feed, ...]:
        return (f.feed(f.fallback_key(), amount=False),) if f.inp.fallback else ()

    def caps(f: Facts) -> tuple[Cap, ...]:
        if not f.inp.fallback:
            return ()
        return (Cap(f.fallback_key(), "count", most, rid, code or RiskCode.FALLBACK_NOT_ALLOWED),)

    return CounterParts(check, reads, feeds, caps)


def compile_merchant_spike(rule: MerchantSpikeRule) -> CounterParts:
    factor, days, floor = rule.factor, rule.baseline_days, rule.min_amount_minor

    def reads(f: Facts) -> tuple[str, ...]:
        return tuple(f.merchant_day_key(back) for back in range(days + 1))

    def check(f: Facts) -> Hit | None:
        today = f.value(f.merchant_day_key()).amount_minor + f.inp.amount_minor
        if today < floor:
            return None
        baseline_total = sum(
            f.value(f.merchant_day_key(b)).amount_minor for b in range(1, days + 1)
        )
        if baseline_total <= 0:
            return None  # no history to compare with: a new shop is not a spike
        mean = baseline_total / days
        if today <= factor * mean:
            return None
        return None, {"today_minor": str(today), "baseline_mean_minor": str(int(mean))}

    def feeds(f: Facts) -> tuple[Feed, ...]:
        return (f.feed(f.merchant_day_key()),)

    return CounterParts(check, reads, feeds, lambda f: ())
