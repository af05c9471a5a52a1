"""Backtest: a candidate ruleset replayed over journal-like rows, with the
counters it would have kept, tallied per rule."""

from __future__ import annotations

import datetime as dt

from posp.risk.backtest import BacktestRow, run_backtest
from posp.risk.engine import CompiledRuleset
from tests.risk.factory import NOON, OTHER_CARD, card_day, inp, rule, ruleset

ROUND = rule("round", "round_amount")


def _rules(action: str, **extra: object) -> CompiledRuleset:
    return ruleset(card_day(action=action, **extra) + ROUND)


def _day(*amounts: int, approved: bool = True) -> list[BacktestRow]:
    return [
        BacktestRow(inp(amount_minor=a, local_time=NOON + dt.timedelta(minutes=i)), approved)
        for i, a in enumerate(amounts)
    ]


def test_backtest_counts_what_the_candidate_declines_and_flags_per_rule() -> None:
    rows = _day(3_000_000, 3_000_000, 3_000_000, 3_000_000, 1_000_000)
    report = run_backtest(_rules("decline"), rows)
    assert (report.rows, report.declined_rows, report.newly_declined) == (5, 1, 1)
    assert report.by_rule["card-day"].declined == 1  # the 4th; the 5th fits what was kept
    assert report.by_rule["round"].flagged == 5 and report.flagged_rows == 5
    assert report.as_dict()["rules"][0]["declined"] == 1  # type: ignore[index]


def test_rows_the_journal_declined_do_not_feed_the_counters() -> None:
    rows = _day(9_000_000, approved=False) + _day(9_000_000)
    assert run_backtest(_rules("decline"), rows).declined_rows == 0


def test_shadow_rules_are_tallied_as_shadowed_and_decline_nothing() -> None:
    rows = _day(6_000_000, 6_000_000, 6_000_000)
    report = run_backtest(_rules("shadow"), rows)
    assert report.declined_rows == 0 and report.by_rule["card-day"].shadowed == 2


def test_approved_refunds_give_back_to_net_caps() -> None:
    refund = BacktestRow(inp(txn_type="refund", amount_minor=5_000_000, local_time=NOON), True)
    rows = [*_day(10_000_000), refund, *_day(5_000_000)]
    rules = _rules("decline", net_of_refunds=True)
    assert run_backtest(rules, rows).declined_rows == 0
    other = [
        *_day(10_000_000),
        BacktestRow(inp(card_hash=OTHER_CARD, txn_type="refund"), True),
        *_day(1),
    ]
    assert run_backtest(rules, other).declined_rows == 1
