"""The risk step end to end over sockets with the shipped ruleset: the seed
limits (30,000.00 single, 100,000.00 a card day) at and one fen over the limit,
holds given back by a network decline, a void and a reversal, decisions kept
with the transaction (terminal-link.md §11)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from issuer_sim.rules import DROP_AMOUNT_MINOR, FORCE_51_AMOUNT_MINOR
from posp.risk.ruleset import default_ruleset_text, load_ruleset
from posp.store.risk_records import SqlRiskRecords
from posp.store.sql_store import SqlStore
from terminals.cards import TerminalCard
from terminals.session import TerminalSession
from tests.e2e.conftest import Stack, eventually
from tests.e2e.test_reversals import answered_but_lost

SINGLE_CAP_MINOR = 3_000_000  # 30,000.00
DAY_CAP_MINOR = 10_000_000  # 100,000.00


def records(stack: Stack) -> SqlRiskRecords:
    assert isinstance(stack.store, SqlStore)
    return SqlRiskRecords(stack.store)


async def buy(terminal: TerminalSession, card: TerminalCard, amount_minor: int) -> str:
    outcome = await terminal.transact(lambda m: m.purchase(card, amount_minor, pin=card.pin))
    return outcome.response_code or ""


async def fill_day(terminal: TerminalSession, card: TerminalCard, left_minor: int) -> None:
    """Approved purchases until the card's day has ``left_minor`` under its cap."""
    spent = 0
    while spent < DAY_CAP_MINOR - left_minor:
        amount = min(SINGLE_CAP_MINOR - 1, DAY_CAP_MINOR - left_minor - spent)
        assert await buy(terminal, card, amount) == "00"
        spent += amount


async def test_single_cap_approves_at_the_limit_and_declines_one_fen_over_with_61(
    stack: Stack,
) -> None:
    card = stack.cards[2]
    terminal = await stack.terminal()
    before = await stack.balance(card)
    assert await buy(terminal, card, SINGLE_CAP_MINOR) == "00"
    over = await terminal.transact(lambda m: m.purchase(card, SINGLE_CAP_MINOR + 1, pin=card.pin))
    assert over.response_code == "61" and over.message is not None
    assert await stack.balance(card) == before - SINGLE_CAP_MINOR  # the issuer never saw it
    explained = await records(stack).by_rrn(over.message.text(37))
    assert explained[0].decisions[0]["rule"] == "single-amount"
    assert explained[0].outcome == "decline" and explained[0].response_code == "61"


async def test_card_day_cap_declines_one_fen_over_100000_with_61(stack: Stack) -> None:
    card = stack.cards[2]
    terminal = await stack.terminal()
    await fill_day(terminal, card, left_minor=1)
    assert await buy(terminal, card, 2) == "61"
    assert await buy(terminal, card, 1) == "00"  # exactly at the cap
    assert await buy(terminal, card, 1) == "61"


async def test_a_network_decline_gives_the_hold_back(stack: Stack) -> None:
    card = stack.cards[2]
    terminal = await stack.terminal()
    await fill_day(terminal, card, left_minor=FORCE_51_AMOUNT_MINOR)
    assert await buy(terminal, card, FORCE_51_AMOUNT_MINOR) == "51"
    assert await buy(terminal, card, FORCE_51_AMOUNT_MINOR - 1) == "00"


async def test_a_void_restores_the_card_day_counter(stack: Stack) -> None:
    card = stack.cards[2]
    terminal = await stack.terminal()
    await fill_day(terminal, card, left_minor=500)
    last = await terminal.transact(lambda m: m.purchase(card, 500, pin=card.pin))
    assert last.approved and await buy(terminal, card, 1) == "61"
    assert (await terminal.transact(lambda m: m.purchase_void(last.trace))).approved
    assert await buy(terminal, card, 500) == "00"


async def test_a_terminal_reversal_restores_the_card_day_counter(stack: Stack) -> None:
    card = stack.cards[2]
    terminal = await stack.terminal()
    await fill_day(terminal, card, left_minor=700)
    await answered_but_lost(stack, terminal, terminal.machine.purchase(card, 700, pin=card.pin))
    assert await buy_after_reversal(stack, terminal, card, 1) == "61"  # the 700 still counts
    reversal = await terminal.exchange(terminal.machine.reversal())
    assert reversal.response_code == "00"
    assert await buy(terminal, card, 700) == "00"


async def buy_after_reversal(
    stack: Stack, terminal: TerminalSession, card: TerminalCard, amount_minor: int
) -> str:
    """A purchase on another terminal while ``terminal`` keeps its reversal due."""
    del terminal
    other = await stack.terminal("10000002")
    return await buy(other, card, amount_minor)


async def test_flags_approve_and_are_listed_for_review(stack: Stack) -> None:
    """A round amount (multiple of 10,000.00) is flagged, approved, and listed."""
    card = stack.cards[3]
    terminal = await stack.terminal()
    outcome = await terminal.transact(lambda m: m.purchase(card, 1_000_000, pin=card.pin))
    assert outcome.approved and outcome.message is not None
    found = await records(stack).by_rrn(outcome.message.text(37))
    assert found and found[0].outcome == "flag" and found[0].held
    assert "round-amount" in [d["rule"] for d in found[0].decisions]
    flagged = await records(stack).flagged(dt.date.fromisoformat(found[0].local_day))
    assert outcome.message.text(37) in [r.rrn for r in flagged]


async def test_a_switch_timeout_gives_the_hold_back(stack: Stack) -> None:
    """No network answer: 98 with a queued 0420, and the hold is released."""
    card = stack.cards[2]
    terminal = await stack.terminal()
    await fill_day(terminal, card, left_minor=DROP_AMOUNT_MINOR)
    assert await buy(terminal, card, DROP_AMOUNT_MINOR) == "98"
    # Before the terminal's own 0400: on another terminal.
    assert await buy_after_reversal(stack, terminal, card, DROP_AMOUNT_MINOR - 1) == "00"


async def test_decisions_are_counted_per_rule_and_action_on_the_switch_registry(
    stack: Stack,
) -> None:
    card = stack.cards[3]
    terminal = await stack.terminal()
    assert await buy(terminal, card, SINGLE_CAP_MINOR + 1) == "61"
    assert stack.switch is not None
    registry = stack.switch.registry
    labels = {"rule": "single-amount", "action": "decline"}
    assert registry.get_sample_value("posp_risk_decisions_total", labels) == 1
    assert registry.get_sample_value("posp_risk_evaluations_total", {"outcome": "decline"}) == 1


async def test_a_shadow_rule_records_its_decline_and_declines_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    assert stack.switch is not None and stack.switch.risk is not None
    text = default_ruleset_text().replace(
        'id = "single-amount"\nkind = "single_amount"\naction = "decline"',
        'id = "single-amount"\nkind = "single_amount"\naction = "shadow"',
    )
    assert 'action = "shadow"' in text
    path = tmp_path / "shadow.toml"
    path.write_text(text)
    stack.switch.risk.holder.swap(load_ruleset(path))
    card = stack.cards[2]
    terminal = await stack.terminal()
    outcome = await terminal.transact(lambda m: m.purchase(card, SINGLE_CAP_MINOR + 1, card.pin))
    assert outcome.approved and outcome.message is not None
    (record,) = await records(stack).by_rrn(outcome.message.text(37))
    shadowed = [d for d in record.decisions if d["rule"] == "single-amount"]
    assert shadowed and shadowed[0]["action"] == "shadow" and shadowed[0]["code"] == "61"


async def test_reversing_a_void_counts_the_purchase_again(stack: Stack) -> None:
    card = stack.cards[2]
    terminal = await stack.terminal()
    await fill_day(terminal, card, left_minor=800)
    last = await terminal.transact(lambda m: m.purchase(card, 800, pin=card.pin))
    assert last.approved
    await answered_but_lost(stack, terminal, terminal.machine.purchase_void(last.trace))
    other = await stack.terminal("10000002")  # while the first keeps its reversal due
    assert await buy(other, card, 800) == "00"  # voided: room again
    assert (await terminal.exchange(terminal.machine.reversal())).response_code == "00"
    # The purchase stands again: the day is now past its cap, one fen more is refused.
    assert await buy(other, card, 1) == "61"


async def test_expired_counters_are_purged_when_the_switch_starts(stack: Stack) -> None:
    assert isinstance(stack.store, SqlStore)
    await stack.store._write(
        "test_expired",
        "INSERT INTO risk_counters (counter_key, expires_on) VALUES ('c:old|d|2000-01-01', ?)",
        ["2000-01-02"],
    )
    await stack.stop_switch()
    await stack.start_switch()
    store = stack.store

    async def purged() -> bool:
        found = await store._read("test_left", "SELECT count(*) AS n FROM risk_counters")
        return int(found[0]["n"]) == 0

    await eventually(purged)
