"""One test per rule kind at its boundary: exactly at the limit passes, one fen
(or one use, or one second) over fires with the kind's §11 code."""

from __future__ import annotations

import datetime as dt

from posp.risk.engine import release
from posp.risk.inputs import TmsCaps
from posp.risk.model import Action, RiskCode
from tests.risk.factory import (
    CARD,
    NOON,
    OTHER_CARD,
    card_day,
    fired,
    fresh,
    inp,
    risk_step,
    rule,
    ruleset,
)

SINGLE = """
[[rules]]
id = "single"
kind = "single_amount"
action = "decline"
max_minor = { purchase = 3_000_000 }
"""


async def test_single_amount_cap_passes_at_30000_and_declines_one_fen_over_with_61() -> None:
    rules, counters = ruleset(SINGLE), fresh()
    assert (await risk_step(rules, counters, inp(amount_minor=3_000_000)))[1] is None
    _, decision = await risk_step(rules, counters, inp(amount_minor=3_000_001))
    assert decision is not None and decision.code is RiskCode.OVER_AMOUNT_LIMIT
    assert decision.triggered == {"amount_minor": "3000001", "limit_minor": "3000000"}


async def test_single_amount_reads_the_terminals_tms_cap_when_lower() -> None:
    rules, counters = ruleset(SINGLE), fresh()
    caps = TmsCaps(purchase_minor=500_000)
    assert (await risk_step(rules, counters, inp(amount_minor=500_000, tms_caps=caps)))[1] is None
    _, decision = await risk_step(rules, counters, inp(amount_minor=500_001, tms_caps=caps))
    assert decision is not None and decision.triggered["limit_minor"] == "500000"


async def test_single_amount_applies_a_tms_refund_cap_without_a_rule_cap_for_refunds() -> None:
    rules = ruleset(
        SINGLE.replace('action = "decline"', 'action = "decline"\ntxn_types = ["refund"]')
    )
    caps = TmsCaps(refund_minor=100)
    assert rules.evaluate(inp(txn_type="refund", amount_minor=100, tms_caps=caps)).decline is None
    assert rules.evaluate(inp(txn_type="refund", amount_minor=101, tms_caps=caps)).decline


def test_the_tms_cap_a_type_takes_is_its_rows_as_for_the_switchs_caps_step() -> None:
    """Every type's TMS cap is the one its row in posp.txn names (none for a
    pre-authorization), the same the switch's own caps step applies (61)."""
    from posp.txn import TXN_TYPES, CapKind

    caps = TmsCaps(purchase_minor=1, refund_minor=2, transfer_minor=3)
    by_kind = {CapKind.PURCHASE: 1, CapKind.REFUND: 2, CapKind.TRANSFER: 3, None: None}
    for txn_type, row in TXN_TYPES.items():
        assert caps.for_type(txn_type.value) == by_kind[row.cap], txn_type
    assert caps.for_type("no such type") is None


CARD_DAY = card_day()


async def test_card_day_amount_reaches_100000_exactly_then_declines_one_fen_with_61() -> None:
    rules, counters = ruleset(CARD_DAY), fresh()
    for _ in range(3):
        assert (await risk_step(rules, counters, inp(amount_minor=3_000_000)))[1] is None
    assert (await risk_step(rules, counters, inp(amount_minor=1_000_000)))[
        1
    ] is None  # = 100,000.00
    _, decision = await risk_step(rules, counters, inp(amount_minor=1))
    assert decision is not None and decision.code is RiskCode.OVER_AMOUNT_LIMIT
    assert (await risk_step(rules, counters, inp(card_hash=OTHER_CARD)))[1] is None


async def test_void_and_reversal_give_the_card_day_back() -> None:
    rules, counters = ruleset(CARD_DAY), fresh()
    first, _ = await risk_step(rules, counters, inp(amount_minor=6_000_000))
    second, _ = await risk_step(rules, counters, inp(amount_minor=4_000_000))
    assert (await risk_step(rules, counters, inp(amount_minor=1)))[1] is not None
    await counters.apply(release(first.hold))  # void
    assert (await risk_step(rules, counters, inp(amount_minor=6_000_000)))[1] is None
    await counters.apply(release(second.hold))  # reversal
    assert (await risk_step(rules, counters, inp(amount_minor=4_000_000)))[1] is None
    assert (await risk_step(rules, counters, inp(amount_minor=1)))[1] is not None


async def test_net_of_refunds_cap_counts_refunds_back_and_the_gross_cap_does_not() -> None:
    net = ruleset(card_day(net_of_refunds=True))
    gross = ruleset(CARD_DAY)
    for rules in (net, gross):
        counters = fresh()
        await risk_step(rules, counters, inp(amount_minor=10_000_000))
        await counters.apply(rules.refund_adds(inp(txn_type="refund", amount_minor=2_000_000)))
        declined = (await risk_step(rules, counters, inp(amount_minor=2_000_000)))[1]
        assert (declined is None) is (rules is net)


async def test_card_week_counts_monday_to_sunday_and_restarts_next_monday() -> None:
    rules, counters = ruleset(card_day(window="week")), fresh()
    monday, sunday = dt.datetime(2026, 11, 30, 10), dt.datetime(2026, 12, 6, 10)
    await risk_step(rules, counters, inp(amount_minor=9_000_000, local_time=monday))
    assert (await risk_step(rules, counters, inp(amount_minor=1_000_000, local_time=sunday)))[
        1
    ] is None
    assert (await risk_step(rules, counters, inp(amount_minor=1, local_time=sunday)))[1]
    next_monday = sunday + dt.timedelta(days=1)
    assert (await risk_step(rules, counters, inp(amount_minor=1, local_time=next_monday)))[
        1
    ] is None


async def test_card_terminal_count_allows_two_a_day_and_the_third_is_65() -> None:
    rules = ruleset(
        rule(
            "pair", "velocity", action="decline", subject="card_terminal", window="day", max_count=2
        )
    )
    counters = fresh()
    for _ in range(2):
        assert (await risk_step(rules, counters, inp()))[1] is None
    _, decision = await risk_step(rules, counters, inp())
    assert decision is not None and decision.code is RiskCode.OVER_FREQUENCY_LIMIT
    assert (await risk_step(rules, counters, inp(terminal_id="10000002")))[1] is None


async def test_merchant_day_cap_scoped_by_mcc_leaves_other_mccs_alone() -> None:
    rules = ruleset(card_day(subject="merchant", scope={"kind": "mcc", "values": ["4829"]}))
    counters = fresh()
    for mcc in ("4829", "5411"):
        await risk_step(
            rules, counters, inp(mcc=mcc, merchant_id=f"898290{mcc}00001", amount_minor=10_000_000)
        )
    assert (
        await risk_step(
            rules, counters, inp(mcc="4829", merchant_id="898290482900001", amount_minor=1)
        )
    )[1]
    assert (
        await risk_step(
            rules, counters, inp(mcc="5411", merchant_id="898290541100001", amount_minor=1)
        )
    )[1] is None


INTERVAL = """
[[rules]]
id = "interval"
kind = "interval"
action = "decline"
min_interval_s = 300
"""


async def test_interval_of_exactly_5_minutes_passes_and_299_seconds_is_65() -> None:
    rules, counters = ruleset(INTERVAL), fresh()
    await risk_step(rules, counters, inp())
    _, decision = await risk_step(rules, counters, inp(local_time=NOON + dt.timedelta(seconds=299)))
    assert decision is not None and decision.code is RiskCode.OVER_FREQUENCY_LIMIT
    assert (await risk_step(rules, counters, inp(local_time=NOON + dt.timedelta(seconds=300))))[
        1
    ] is None


async def test_pair_months_flags_the_third_month_running_and_a_gap_restarts_the_run() -> None:
    rules = ruleset('[[rules]]\nid = "months"\nkind = "pair_months"\nmax_months = 2\n')
    counters = fresh()
    for month in (10, 11):
        await risk_step(rules, counters, inp(local_time=dt.datetime(2026, month, 15, 12)))
    december, _ = await risk_step(rules, counters, inp())
    decision = fired(december, "months")
    assert decision is not None and decision.action is Action.FLAG
    assert decision.triggered["months_running"] == "3"
    gap = fresh()
    for month in (9, 11):
        await risk_step(rules, gap, inp(local_time=dt.datetime(2026, month, 15, 12)))
    assert fired((await risk_step(rules, gap, inp()))[0], "months") is None


async def test_round_amount_fires_on_10000_00_and_not_one_fen_off() -> None:
    rules = ruleset('[[rules]]\nid = "round"\nkind = "round_amount"\nunit_minor = 1_000_000\n')
    assert fired(rules.evaluate(inp(amount_minor=1_000_000)), "round") is not None
    assert fired(rules.evaluate(inp(amount_minor=2_000_000)), "round") is not None
    assert fired(rules.evaluate(inp(amount_minor=1_000_001)), "round") is None
    assert fired(rules.evaluate(inp(amount_minor=999_999)), "round") is None


async def test_odd_amount_fires_from_its_floor_on_amounts_with_fen_only() -> None:
    rules = ruleset('[[rules]]\nid = "odd"\nkind = "odd_amount"\nmin_amount_minor = 500_000\n')
    assert fired(rules.evaluate(inp(amount_minor=500_001)), "odd") is not None
    assert fired(rules.evaluate(inp(amount_minor=4_999_999)), "odd") is not None
    assert fired(rules.evaluate(inp(amount_minor=500_000)), "odd") is None
    assert fired(rules.evaluate(inp(amount_minor=499_999)), "odd") is None


NIGHT = """
[[rules]]
id = "night"
kind = "night"
action = "decline"
max_single_minor = 1_000_000
max_card_night_minor = 2_000_000
"""


def test_night_window_is_before_09_00_and_from_21_00() -> None:
    rules = ruleset(NIGHT)
    big = 1_000_001
    for clock, night in (
        ((8, 59, 59), True),
        ((9, 0, 0), False),
        ((20, 59, 59), False),
        ((21, 0, 0), True),
    ):
        local = dt.datetime(2026, 12, 3, *clock)
        assert (
            rules.evaluate(inp(amount_minor=big, local_time=local)).decline is not None
        ) is night


async def test_night_cap_rolls_over_at_21_00_into_the_next_business_day() -> None:
    header = "business_day_rollover = 21:00:00"
    rules, counters = ruleset(NIGHT, header=header), fresh()
    evening, small_hours = dt.datetime(2026, 12, 3, 21, 30), dt.datetime(2026, 12, 4, 2, 0)
    assert (await risk_step(rules, counters, inp(amount_minor=1_000_000, local_time=evening)))[
        1
    ] is None
    assert (await risk_step(rules, counters, inp(amount_minor=1_000_000, local_time=small_hours)))[
        1
    ] is None
    _, decision = await risk_step(rules, counters, inp(amount_minor=1, local_time=small_hours))
    assert decision is not None and decision.code is RiskCode.SUSPECTED_FRAUD
    next_night = dt.datetime(2026, 12, 4, 21, 0)  # business day 5 December
    assert (await risk_step(rules, counters, inp(amount_minor=1, local_time=next_night)))[1] is None


async def test_a_purchase_after_rollover_counts_on_the_next_days_card_cap() -> None:
    rules, counters = ruleset(CARD_DAY, header="business_day_rollover = 21:00:00"), fresh()
    await risk_step(
        rules, counters, inp(amount_minor=10_000_000, local_time=dt.datetime(2026, 12, 3, 20, 59))
    )
    assert (
        await risk_step(
            rules,
            counters,
            inp(amount_minor=10_000_000, local_time=dt.datetime(2026, 12, 3, 21, 0)),
        )
    )[1] is None
    assert (
        await risk_step(
            rules, counters, inp(amount_minor=1, local_time=dt.datetime(2026, 12, 4, 8, 0))
        )
    )[1]


REGION = """
[[rules]]
id = "region"
kind = "region"
action = "decline"
check_card_region = true
bin_regions = { "622588" = "3100", "6225" = "2900" }
"""


def test_region_mismatch_of_terminal_location_or_card_bin_is_59() -> None:
    rules = ruleset(REGION)
    assert rules.evaluate(inp(terminal_region="2900", bin="622512")).decline is None
    decision = rules.evaluate(inp(terminal_region="3100", bin="622512")).decline
    assert decision is not None and decision.code is RiskCode.SUSPECTED_FRAUD
    assert decision.triggered == {"merchant_region": "2900", "terminal_region": "3100"}
    by_card = rules.evaluate(inp(bin="622588")).decline  # the longest BIN prefix wins
    assert by_card is not None and by_card.triggered["card_region"] == "3100"
    assert rules.evaluate(inp(terminal_region="", bin="999999")).decline is None


async def test_merchant_spike_fires_above_factor_times_its_trailing_mean_only() -> None:
    rules = ruleset(
        '[[rules]]\nid = "spike"\nkind = "merchant_spike"\nfactor = 5.0\nbaseline_days = 7\n'
        "min_amount_minor = 1_000_000\n"
    )
    counters = fresh()
    for back in range(1, 8):  # 2,000.00 a day for the week before
        day = NOON - dt.timedelta(days=back)
        await risk_step(
            rules, counters, inp(amount_minor=200_000, local_time=day, card_hash=f"{back:032x}")
        )
    at_factor, _ = await risk_step(rules, counters, inp(amount_minor=1_000_000))  # = 5 x mean
    assert fired(at_factor, "spike") is None
    over, _ = await risk_step(rules, counters, inp(amount_minor=1))
    assert fired(over, "spike") is not None


async def test_merchant_without_history_is_not_a_spike() -> None:
    rules = ruleset('[[rules]]\nid = "spike"\nkind = "merchant_spike"\nmin_amount_minor = 1\n')
    assert fired(rules.evaluate(inp(amount_minor=9_000_000)), "spike") is None


async def test_fallback_allows_three_a_day_per_terminal_and_the_fourth_is_45() -> None:
    rules = ruleset(
        '[[rules]]\nid = "fb"\nkind = "fallback"\naction = "decline"\nmax_per_day = 3\n'
    )
    counters = fresh()
    for _ in range(3):
        assert (await risk_step(rules, counters, inp(fallback=True)))[1] is None
    assert (await risk_step(rules, counters, inp(fallback=False)))[
        1
    ] is None  # chip reads do not count
    _, decision = await risk_step(rules, counters, inp(fallback=True))
    assert decision is not None and decision.code is RiskCode.FALLBACK_NOT_ALLOWED


def test_block_list_declines_listed_cards_and_bins_with_57() -> None:
    rules = ruleset(
        f'[[rules]]\nid = "block"\nkind = "block_list"\naction = "decline"\n'
        f'card_hashes = ["{CARD}"]\nbins = ["621234"]\n'
    )
    by_card = rules.evaluate(inp()).decline
    assert by_card is not None and by_card.code is RiskCode.NOT_PERMITTED_TO_CARD
    assert CARD not in str(by_card.triggered)  # a prefix only
    assert rules.evaluate(inp(card_hash=OTHER_CARD, bin="62123456")).decline is not None
    assert rules.evaluate(inp(card_hash=OTHER_CARD)).decline is None
