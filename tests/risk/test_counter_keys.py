"""The counters' key layout (``posp.risk.facts``): every key begins with its
subject, a card-on-terminal key with its card's, and a key of the layout
before migration 0033 translates (``current_key``) to exactly the key the
engine builds now, so a hold kept before the upgrade gives back what it added.
The store's migration is held to ``current_key`` in
``tests/store/test_counter_key_migration.py``."""

from __future__ import annotations

import datetime as dt
import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from posp.risk.counters import CounterAdd, adds_from_json, adds_to_json, current_key
from posp.risk.facts import Facts, Family, night_label
from posp.risk.ruleset import load_ruleset
from tests.risk.factory import inp

DEFAULT = load_ruleset()
NIGHT = (dt.time(9, 0), dt.time(21, 0))

cards = st.text(alphabet="0123456789abcdef", min_size=16, max_size=64)
terminals = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=8, max_size=8)
merchants = st.text(alphabet=string.digits, min_size=15, max_size=15)
times = st.builds(
    lambda minutes: dt.datetime(2026, 1, 1) + dt.timedelta(minutes=minutes),
    st.integers(0, 60 * 24 * 800),  # two years and more: every week, month and year turn
)


def facts_of(card: str, terminal: str, merchant: str, when: dt.datetime) -> Facts:
    value = inp(card_hash=card, terminal_id=terminal, merchant_id=merchant, local_time=when)
    return Facts(value, DEFAULT.rollover, {})


@settings(max_examples=300, deadline=None)
@given(cards, terminals, merchants, times)
def test_a_key_of_the_layout_before_translates_to_the_key_built_now(
    card: str, terminal: str, merchant: str, when: dt.datetime
) -> None:
    facts = facts_of(card, terminal, merchant, when)
    day, week = facts.day, facts.cal.week
    label = night_label(*NIGHT)
    before_and_now = {
        f"c|{card}|d|{day}": facts.window_key("c", "d"),
        f"c|{card}|w|{week}": facts.window_key("c", "w"),
        f"ct|{card}|{terminal}|d|{day}": facts.window_key("ct", "d"),
        f"ct|{card}|{terminal}|w|{week}": facts.window_key("ct", "w"),
        f"m|{merchant}|d|{day}": facts.window_key("m", "d"),
        f"m|{merchant}|w|{week}": facts.window_key("m", "w"),
        f"ctl|{card}|{terminal}": facts.last_use_key(),
        f"cn{label}|{card}|{day}": facts.night_key(*NIGHT),
        f"tf|{terminal}|{day}": facts.fallback_key(),
    }
    for back, month in enumerate(facts.cal.months_back[:3]):
        before_and_now[f"ctm|{card}|{terminal}|{month}"] = facts.pair_month_key(back)
    for back, past in enumerate(facts.cal.days_back[:8]):
        before_and_now[f"m|{merchant}|d|{past}"] = facts.merchant_day_key(back)
    for legacy, now in before_and_now.items():
        assert current_key(legacy) == now, legacy
        assert current_key(now) == now  # a key of the current layout stays as it is


@settings(max_examples=200, deadline=None)
@given(cards, terminals, merchants, times, st.booleans())
def test_every_key_begins_with_its_subject(
    card: str, terminal: str, merchant: str, when: dt.datetime, fallback: bool
) -> None:
    """What puts a card's counters on the same pages: its keys, and its
    card-on-terminal keys, all begin with ``c:<card>|``."""
    value = inp(
        card_hash=card,
        terminal_id=terminal,
        merchant_id=merchant,
        local_time=when,
        fallback=fallback,
    )
    facts = Facts(value, DEFAULT.rollover, {})
    families = (*DEFAULT.families, Family("night", start=NIGHT[0], end=NIGHT[1]))
    keys = {key for family in families for key in facts.reads(family)}
    keys |= {feed.key for family in families for feed in facts.feeds(family)}
    assert keys
    for key in keys:
        subject = key.split("|", 1)[0]
        assert subject in (f"c:{card}", f"m:{merchant}", f"t:{terminal}"), key
        if "|t:" in key:
            assert key.startswith(f"c:{card}|t:{terminal}|"), key


@settings(deadline=None)
@given(st.text(max_size=40))
def test_a_key_of_no_known_shape_is_left_as_it_is(text: str) -> None:
    translated = current_key(text)
    assert translated == text or translated.split("|", 1)[0][:2] in ("c:", "m:", "t:")
    assert current_key(translated) == translated  # translating twice changes nothing


def test_shapes_that_only_look_like_the_layout_before_are_left_alone() -> None:
    for text in (
        "c|x|d",  # one part short
        "c|x|d|2026-12-03|extra",
        "C|x|d|2026-12-03",  # the layout was lower case
        "ct|x|d|2026-12-03",
        "ctl|x",
        "cn0900210|x|2026-12-03",  # seven digits
        "cn09002100x|x|2026-12-03",
        "cn0900٢100|x|2026-12-03",  # a digit, not an ASCII one
        "tf|x",
        "",
    ):
        assert current_key(text) == text


def test_a_hold_kept_before_the_upgrade_gives_back_to_the_migrated_counters() -> None:
    """``take_hold`` and ``restore_hold`` read the kept hold through ``adds_from_json``."""
    until = dt.date(2027, 2, 3)
    kept = json.dumps(
        [
            ["c|a1b2|d|2026-12-03", 500, 1, 0, 100, "2027-02-03"],
            ["ctl|a1b2|10000001", 0, 1, 0, 100, "2027-02-03"],
            ["m|898290054110001|w|2026W49", 500, 1, 0, 100, "2027-02-03"],
        ]
    )
    assert adds_from_json(kept) == (
        CounterAdd("c:a1b2|d|2026-12-03", 500, 1, 0, 100, until),
        CounterAdd("c:a1b2|t:10000001|l", 0, 1, 0, 100, until),
        CounterAdd("m:898290054110001|w|2026W49", 500, 1, 0, 100, until),
    )
    current = (CounterAdd("c:a1b2|d|2026-12-03", 500, 1, 0, 100, until),)
    assert adds_from_json(adds_to_json(current)) == current
