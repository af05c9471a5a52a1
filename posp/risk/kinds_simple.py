"""Rule kinds that need no counter: single-amount cap, round and odd amounts,
region mismatch, block lists.  Each ``compile_*`` turns a validated model into
a check closure with its parameters bound as locals.

Invariants: closures never raise on a well-formed :class:`RiskInput`; what
they report in a hit is bounded and masked (a card hash is cut to a prefix).
"""

from __future__ import annotations

from posp.risk.compiled import Check, Hit
from posp.risk.facts import Facts
from posp.risk.inputs import masked_hash
from posp.risk.model import (
    BlockListRule,
    OddAmountRule,
    RegionRule,
    RoundAmountRule,
    SingleAmountRule,
)


def compile_single_amount(rule: SingleAmountRule) -> Check:
    caps = dict(rule.max_minor)
    use_tms = rule.use_tms_caps

    def check(f: Facts) -> Hit | None:
        inp = f.inp
        cap = caps.get(inp.txn_type)
        if use_tms:
            tms = inp.tms_caps.for_type(inp.txn_type)
            if tms is not None and (cap is None or tms < cap):
                cap = tms
        if cap is None or inp.amount_minor <= cap:
            return None
        return None, {"amount_minor": str(inp.amount_minor), "limit_minor": str(cap)}

    return check


def compile_round_amount(rule: RoundAmountRule) -> Check:
    unit = rule.unit_minor

    def check(f: Facts) -> Hit | None:
        amount = f.inp.amount_minor
        if amount <= 0 or amount % unit:
            return None
        return None, {"amount_minor": str(amount), "unit_minor": str(unit)}

    return check


def compile_odd_amount(rule: OddAmountRule) -> Check:
    floor = rule.min_amount_minor

    def check(f: Facts) -> Hit | None:
        amount = f.inp.amount_minor
        if amount < floor or amount % 100 == 0:
            return None
        return None, {"amount_minor": str(amount), "min_amount_minor": str(floor)}

    return check


def compile_region(rule: RegionRule) -> Check:
    digits = rule.prefix_digits
    check_terminal = rule.check_terminal_location
    check_card = rule.check_card_region
    by_length = _prefix_table(rule.bin_regions)

    def check(f: Facts) -> Hit | None:
        inp = f.inp
        merchant = f.region[:digits]
        if not merchant:
            return None
        terminal = inp.terminal_region[:digits]
        if check_terminal and terminal and terminal != merchant:
            return None, {"merchant_region": merchant, "terminal_region": terminal}
        if check_card:
            card = _lookup(by_length, inp.bin)
            if card and card[:digits] != merchant:
                return None, {"merchant_region": merchant, "card_region": card[:digits]}
        return None

    return check


def compile_block_list(rule: BlockListRule) -> Check:
    hashes = frozenset(h.lower() for h in rule.card_hashes)
    bins = rule.bins
    lengths = sorted({len(b) for b in bins}, reverse=True)

    def check(f: Facts) -> Hit | None:
        inp = f.inp
        if f.card_lower in hashes:
            return None, {"card": masked_hash(inp.card_hash), "list": "card"}
        for length in lengths:
            if inp.bin[:length] in bins:
                return None, {"bin": inp.bin[:length], "list": "bin"}
        return None

    return check


def _prefix_table(regions: dict[str, str]) -> list[tuple[int, dict[str, str]]]:
    """BIN prefixes grouped by length, longest first (the most specific wins)."""
    grouped: dict[int, dict[str, str]] = {}
    for prefix, region in regions.items():
        grouped.setdefault(len(prefix), {})[prefix] = region
    return sorted(grouped.items(), reverse=True)


def _lookup(table: list[tuple[int, dict[str, str]]], bin_digits: str) -> str:
    for length, regions in table:
        region = regions.get(bin_digits[:length])
        if region is not None:
            return region
    return ""
