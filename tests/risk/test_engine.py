"""The evaluation around the rules: actions, scopes, order, the hold and the
race the store settles, and the shipped default ruleset's numbers."""

from __future__ import annotations

import datetime as dt

from posp.risk.counters import adds_from_json, adds_to_json
from posp.risk.model import Action, RiskCode
from posp.risk.ruleset import load_ruleset
from tests.risk.factory import CARD, NOON, card_day, fired, fresh, inp, risk_step, ruleset


async def test_shadow_rule_records_what_it_would_do_and_declines_nothing() -> None:
    rules, counters = ruleset(card_day(limit_minor=1_000, action="shadow")), fresh()
    for _ in range(3):
        evaluation, decision = await risk_step(rules, counters, inp(amount_minor=1_000))
        assert decision is None and evaluation.hold  # approved and counted
    shadowed = fired(evaluation, "card-day")
    assert shadowed is not None and shadowed.action is Action.SHADOW
    assert shadowed.code is RiskCode.OVER_AMOUNT_LIMIT
    assert counters.values[evaluation.hold[0].key].amount_minor == 3_000


async def test_flag_rule_approves_and_records_a_flag() -> None:
    rules, counters = ruleset(card_day(limit_minor=1_000, action="flag")), fresh()
    await risk_step(rules, counters, inp(amount_minor=1_000))
    evaluation, decision = await risk_step(rules, counters, inp(amount_minor=1))
    assert decision is None and evaluation.flagged


def test_first_declining_rule_in_file_order_answers_and_later_hits_are_still_recorded() -> None:
    rules = ruleset(
        '[[rules]]\nid = "round"\nkind = "round_amount"\n'
        '[[rules]]\nid = "block"\nkind = "block_list"\naction = "decline"\nbins = ["6225"]\n'
        '[[rules]]\nid = "single"\nkind = "single_amount"\naction = "decline"\n'
        "max_minor = { purchase = 1 }\n"
    )
    evaluation = rules.evaluate(inp(amount_minor=1_000_000))
    assert evaluation.decline is not None and evaluation.decline.rule_id == "block"
    assert [d.rule_id for d in evaluation.decisions] == ["round", "block", "single"]
    assert evaluation.hold == ()  # a declined transaction holds nothing


def test_a_rules_own_code_wins_over_the_kinds_default() -> None:
    rules = ruleset(
        '[[rules]]\nid = "block"\nkind = "block_list"\naction = "decline"\ncode = "34"\n'
        f'card_hashes = ["{CARD}"]\n'
    )
    decision = rules.evaluate(inp()).decline
    assert decision is not None and decision.code is RiskCode.FRAUD_KEEP_CARD


def test_scopes_select_by_terminal_merchant_and_group_and_disabled_rules_never_run() -> None:
    single = (
        '[[rules]]\nid = "s"\nkind = "single_amount"\naction = "decline"\n'
        "max_minor = { purchase = 1 }\n"
    )
    cases = {
        'scope = { kind = "terminal", values = ["10000009"] }': inp(terminal_id="10000009"),
        'scope = { kind = "merchant", values = ["898290054110009"] }': inp(
            merchant_id="898290054110009"
        ),
        'scope = { kind = "merchant_group", values = ["chain-a"] }': inp(merchant_group="chain-a"),
    }
    for scope, inside in cases.items():
        rules = ruleset(single + scope + "\n")
        assert rules.evaluate(inside).decline is not None
        assert rules.evaluate(inp()).decline is None
    assert ruleset(single + "enabled = false\n").evaluate(inp()).decline is None


def test_rules_apply_only_to_their_transaction_types() -> None:
    rules = ruleset(
        '[[rules]]\nid = "s"\nkind = "single_amount"\naction = "decline"\n'
        'max_minor = { refund = 1 }\ntxn_types = ["refund"]\n'
    )
    assert rules.evaluate(inp(amount_minor=5)).decline is None
    assert rules.evaluate(inp(txn_type="refund", amount_minor=5)).decline is not None


async def test_two_evaluations_on_one_snapshot_race_and_the_store_refuses_the_second() -> None:
    rules, counters = ruleset(card_day(limit_minor=1_000)), fresh()
    snapshot = await counters.snapshot(rules.counter_keys(inp()))
    first = rules.evaluate(inp(amount_minor=600), snapshot)
    second = rules.evaluate(inp(amount_minor=600), snapshot)
    assert first.decline is None and second.decline is None  # each alone fits
    assert (await counters.check_and_add(first.hold)).applied
    result = await counters.check_and_add(second.hold)
    assert not result.applied
    refusal = second.refused_by(result)
    assert refusal.rule_id == "card-day" and refusal.code is RiskCode.OVER_AMOUNT_LIMIT


def test_a_counter_used_by_several_rules_is_fed_once_with_the_tightest_cap() -> None:
    rules = ruleset(card_day(limit_minor=1_000) + card_day("b", limit_minor=500))
    (add,) = rules.evaluate(inp(amount_minor=100)).hold
    assert add.amount_minor == 100 and add.txn_count == 1 and add.max_amount_minor == 500


def test_uncounted_types_are_checked_but_hold_nothing() -> None:
    rules = ruleset(card_day(limit_minor=1_000))
    assert rules.evaluate(inp(txn_type="preauth", amount_minor=1_001)).decline is not None
    assert rules.evaluate(inp(txn_type="preauth", amount_minor=5)).hold == ()


def test_a_hold_survives_json_for_a_later_release() -> None:
    hold = load_ruleset().evaluate(inp()).hold
    assert adds_from_json(adds_to_json(hold)) == tuple(a.uncapped() for a in hold)


def _default_decline(amount_minor: int, **changes: object) -> str | None:
    decision = load_ruleset().evaluate(inp(amount_minor=amount_minor, **changes)).decline
    return decision.code.value if decision else None


async def test_default_ruleset_reproduces_the_issues_numbers_and_actions() -> None:
    assert _default_decline(3_000_000) is None and _default_decline(3_000_001) == "61"
    rules, counters = load_ruleset(), fresh()
    day = [
        inp(
            amount_minor=2_500_000,
            terminal_id=f"1000000{i}",
            local_time=NOON + dt.timedelta(minutes=10 * i),
        )
        for i in range(4)
    ]
    for txn in day:  # 100,000.00 on four terminals
        assert (await risk_step(rules, counters, txn))[1] is None
    _, decision = await risk_step(rules, counters, inp(amount_minor=1, terminal_id="10000009"))
    assert decision is not None and decision.rule_id == "card-day-amount"
    pair = fresh()
    for minutes in (0, 6, 12):
        evaluation, decision = await risk_step(
            rules, pair, inp(local_time=NOON + dt.timedelta(minutes=minutes))
        )
        assert decision is None  # the card+terminal patterns flag, never decline
    assert fired(evaluation, "card-terminal-day-count") is not None
    quick, _ = await risk_step(rules, fresh(), inp())
    assert fired(quick, "card-terminal-interval") is None
    for name, changes in {
        "round-amount": {"amount_minor": 1_000_000},
        "odd-amount": {"amount_minor": 500_001},
        "night": {"amount_minor": 1_000_001, "local_time": dt.datetime(2026, 12, 3, 22)},
        "region": {"terminal_region": "3100"},
    }.items():
        evaluation = rules.evaluate(inp(**changes))  # type: ignore[arg-type]
        decision = fired(evaluation, name)
        assert (
            decision is not None and decision.action is Action.FLAG and evaluation.decline is None
        )


def test_every_rule_kind_of_the_schema_has_exactly_one_compiler() -> None:
    from posp.risk import ruleset as loader
    from posp.risk.model import DEFAULT_CODES

    compilers = [*loader._COUNTER_KINDS, *loader._SIMPLE_KINDS, *loader._FUSED_SIMPLE_KINDS]
    assert sorted(compilers) == sorted(DEFAULT_CODES) and len(set(compilers)) == len(compilers)


def test_fused_rules_decide_exactly_as_each_rule_alone() -> None:
    """Rules of a kind fused into one closure per plan (posp.risk.compiled.Fusion)
    give the same decisions, in file order, the same decline and the same hold as
    the same rules evaluated one by one, over 200 rules of every kind."""
    import dataclasses
    import random

    from posp.risk.engine import CompiledRuleset
    from tests.bench.bench_risk import _purchase, _warm_counters, many_rules

    fused = many_rules(200)
    alone = CompiledRuleset(
        fused.version,
        fused.rollover,
        fused.counted_txn_types,
        [dataclasses.replace(r, fusion=None) for r in fused.rules],
    )
    rng = random.Random(7)
    inputs = [_purchase(rng, n) for n in range(3_000)]
    counters = _warm_counters(fused, inputs[:2_000])
    fired = 0
    for purchase in inputs[2_000:]:
        one = fused.evaluate(purchase, counters.values)
        other = alone.evaluate(purchase, counters.values)
        assert one == other
        fired += len(one.decisions)
    assert fired > 1_000  # the comparison saw rules fire, not only silence


def test_the_default_rulesets_snapshot_reads_each_counter_once() -> None:
    """Families share keys (a merchant's day: its cap and the spike baseline's
    newest day); the snapshot asks for each once, and for all the hold feeds."""
    shipped = load_ruleset()
    prepared = shipped.prepare(inp())
    assert len(set(prepared.keys)) == len(prepared.keys)
    hold = shipped.evaluate_prepared(prepared, {}).hold
    assert {add.key for add in hold} <= set(prepared.keys)
