"""The backtest's replay feeds its counters from ``Facts.fed_amounts``: for any
input it must name exactly the counters, and add exactly the amounts, that the
live hold's ``Facts.feeds`` would (first family feeding a key decides)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from posp.risk.facts import Facts
from posp.risk.inputs import CounterValue
from posp.risk.ruleset import load_ruleset
from tests.risk.factory import inp

DEFAULT = load_ruleset()

inputs = st.builds(
    lambda amount, minutes, fallback, card, terminal: inp(
        amount_minor=amount,
        local_time=dt.datetime(2026, 12, 3) + dt.timedelta(minutes=minutes),
        fallback=fallback,
        card_hash=card,
        terminal_id=terminal,
    ),
    st.integers(1, 10**10),
    st.integers(0, 60 * 24 * 70),  # ten weeks: nights, week and month turns
    st.booleans(),
    st.sampled_from(["a1" * 16, "b2" * 16]),
    st.sampled_from(["10000001", "10000002"]),
)


@settings(max_examples=300)
@given(inputs)
def test_fed_amounts_are_the_feeds_deduplicated(value: object) -> None:
    facts = Facts(value, DEFAULT.rollover, {})  # type: ignore[arg-type]
    expected: dict[str, int] = {}
    for family in DEFAULT.families:
        for feed in facts.feeds(family):
            assert feed.at_s == facts.local_s
            expected.setdefault(feed.key, feed.amount_minor)
    assert Facts(value, DEFAULT.rollover, {}).fed_amounts(DEFAULT.families) == expected  # type: ignore[arg-type]


@settings(max_examples=100)
@given(st.lists(inputs, min_size=1, max_size=12))
def test_replay_keeps_the_counters_the_holds_would(values: list[object]) -> None:
    """Replaying approved purchases leaves every counter where applying each
    purchase's hold (the live path) would."""
    replayed: dict[str, CounterValue] = {}
    held: dict[str, CounterValue] = {}
    for value in values:
        evaluation = DEFAULT.replay(value, replayed, approved=True)  # type: ignore[arg-type]
        if evaluation.decline is not None:
            continue
        for add in DEFAULT.evaluate(value, held).hold:  # type: ignore[arg-type]
            held[add.key] = add.applied_to(held.get(add.key, CounterValue()))
    assert replayed == held
