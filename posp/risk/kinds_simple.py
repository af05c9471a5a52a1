"""Rule kinds that need no counter: single-amount cap, round and odd amounts,
region mismatch, block lists.  Each ``compile_*`` turns a validated model into
a check closure with its parameters bound as locals.

Invariants: closures never raise on a well-formed :class:`RiskInput`; what
they report in a hit is bounded and masked (a card hash is cut to a prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from posp.risk.compiled import Check, Fusion, GroupCheck, GroupHits, Hit
from posp.risk.facts import Facts
from posp.risk.inputs import masked_hash
from posp.risk.model import (
    BlockListRule,
    OddAmountRule,
    RegionRule,
    RoundAmountRule,
    SingleAmountRule,
)


def _single_amount_group(members: Sequence[tuple[int, Any]]) -> GroupCheck:
    rows = tuple((i, *params) for i, params in members)

    def check(f: Facts) -> GroupHits:
        inp = f.inp
        amount, txn_type = inp.amount_minor, inp.txn_type
        tms = inp.tms_caps.for_type(txn_type)
        hits: GroupHits = None
        for i, caps, use_tms in rows:
            cap = caps.get(txn_type)
            if use_tms and tms is not None and (cap is None or tms < cap):
                cap = tms
            if cap is None or amount <= cap:
                continue
            if hits is None:
                hits = []
            hits.append((i, (None, {"amount_minor": str(amount), "limit_minor": str(cap)})))
        return hits

    return check


def fuse_single_amount(rule: SingleAmountRule) -> Fusion:
    return Fusion(
        ("single_amount",), (dict(rule.max_minor), rule.use_tms_caps), _single_amount_group
    )


def _round_amount_group(members: Sequence[tuple[int, Any]]) -> GroupCheck:
    rows = tuple(members)

    def check(f: Facts) -> GroupHits:
        amount = f.inp.amount_minor
        if amount <= 0:
            return None
        hits: GroupHits = None
        for i, unit in rows:
            if amount % unit == 0:
                if hits is None:
                    hits = []
                hits.append((i, (None, {"amount_minor": str(amount), "unit_minor": str(unit)})))
        return hits

    return check


def fuse_round_amount(rule: RoundAmountRule) -> Fusion:
    return Fusion(("round_amount",), rule.unit_minor, _round_amount_group)


def _odd_amount_group(members: Sequence[tuple[int, Any]]) -> GroupCheck:
    rows = tuple(members)

    def check(f: Facts) -> GroupHits:
        amount = f.inp.amount_minor
        if amount % 100 == 0:
            return None
        hits: GroupHits = None
        for i, floor in rows:
            if amount >= floor:
                if hits is None:
                    hits = []
                hit: Hit = None, {"amount_minor": str(amount), "min_amount_minor": str(floor)}
                hits.append((i, hit))
        return hits

    return check


def fuse_odd_amount(rule: OddAmountRule) -> Fusion:
    return Fusion(("odd_amount",), rule.min_amount_minor, _odd_amount_group)


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
