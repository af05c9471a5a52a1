"""The pattern rules of the shipped ruleset end to end over sockets, at their
seed numbers (terminal-link.md §11): a card on one terminal twice a business day
and three times a week, 5 minutes between uses, a 10,000.00 round amount, the
night window's single and per-card caps.  Each: exactly at the limit not
flagged, one over flagged (approved, kept for review); and with the rule
switched to ``decline`` the one over answered its code while the issuer's
balance does not move.  (Dormancy and a changed device: test_terminal_lifecycle.)"""

from __future__ import annotations

from pathlib import Path

from posp.risk.inputs import LOCAL_EPOCH
from posp.risk.ruleset import default_ruleset_text, load_ruleset
from posp.store.risk_records import SqlRiskRecords
from posp.store.sql_store import SqlStore
from terminals.cards import TerminalCard
from terminals.outcome import Outcome
from terminals.session import TerminalSession
from tests.e2e.conftest import Stack


def records(stack: Stack) -> SqlRiskRecords:
    assert isinstance(stack.store, SqlStore)
    return SqlRiskRecords(stack.store)


def use_rules(stack: Stack, tmp_path: Path, text: str) -> None:
    """Swap the switch's ruleset for ``text`` (as a reload would)."""
    assert stack.switch is not None and stack.switch.risk is not None
    path = tmp_path / f"rules-{abs(hash(text))}.toml"
    path.write_text(text)
    stack.switch.risk.holder.swap(load_ruleset(path))


def declining(rule_id: str, text: str | None = None) -> str:
    """The ruleset with ``rule_id`` (a flagging rule) switched to decline."""
    text = default_ruleset_text() if text is None else text
    marker = f'id = "{rule_id}"\n'
    assert marker in text
    return text.replace(marker, f'{marker}action = "decline"\n')


async def buy(terminal: TerminalSession, card: TerminalCard, amount_minor: int) -> Outcome:
    return await terminal.transact(lambda m: m.purchase(card, amount_minor, pin=card.pin))


async def fired(stack: Stack, outcome: Outcome) -> dict[str, str]:
    """The rules that fired on an answered purchase: rule id → action."""
    assert outcome.message is not None
    found = await records(stack).by_rrn(outcome.message.text(37))
    return {str(d["rule"]): str(d["action"]) for r in found for d in r.decisions}


async def test_a_card_on_a_terminal_twice_a_day_and_three_times_a_week(stack: Stack) -> None:
    card = stack.cards[3]
    terminal = await stack.terminal()
    seen = []
    for amount in (1_101, 1_102, 1_103, 1_104):
        outcome = await buy(terminal, card, amount)
        assert outcome.approved
        seen.append(await fired(stack, outcome))
    day, week = "card-terminal-day-count", "card-terminal-week-count"
    assert day not in seen[0] and day not in seen[1]  # twice: at the limit
    assert seen[2].get(day) == "flag" and seen[3].get(day) == "flag"
    assert week not in seen[2]  # three times this week: at the limit
    assert seen[3].get(week) == "flag"
    other = await stack.terminal("10000002")  # another terminal: another pair
    assert day not in await fired(stack, await buy(other, card, 1_105))


async def test_the_same_card_twice_a_day_declines_65_when_switched_to_decline(
    stack: Stack, tmp_path: Path
) -> None:
    use_rules(stack, tmp_path, declining("card-terminal-day-count"))
    card = stack.cards[3]
    terminal = await stack.terminal()
    assert (await buy(terminal, card, 1_201)).approved
    assert (await buy(terminal, card, 1_202)).approved  # exactly twice
    before = await stack.balance(card)
    third = await buy(terminal, card, 1_203)
    assert third.response_code == "65"
    assert await stack.balance(card) == before  # the issuer never saw it
    assert (await fired(stack, third))["card-terminal-day-count"] == "decline"


async def test_three_times_a_week_declines_65_when_switched_to_decline(
    stack: Stack, tmp_path: Path
) -> None:
    use_rules(stack, tmp_path, declining("card-terminal-week-count"))
    card = stack.cards[3]
    terminal = await stack.terminal()
    for amount in (1_301, 1_302, 1_303):  # exactly three (the day rule only flags)
        assert (await buy(terminal, card, amount)).approved
    before = await stack.balance(card)
    fourth = await buy(terminal, card, 1_304)
    assert fourth.response_code == "65"
    assert await stack.balance(card) == before


async def switch_local_s(stack: Stack) -> int:
    """The switch's local time in seconds, as the rules count it."""
    assert stack.switch is not None and stack.switch.pipeline is not None
    now = stack.switch.pipeline.services.local_now().replace(tzinfo=None)
    return int((now - LOCAL_EPOCH).total_seconds())


async def set_last_use(stack: Stack, card: TerminalCard, terminal_id: str, at_s: int) -> None:
    """The card's last use on the terminal, as the interval rule's counter holds it."""
    assert isinstance(stack.store, SqlStore) and stack.switch is not None
    assert stack.switch.pipeline is not None
    card_hash = stack.switch.pipeline.services.pan_hash(card.pan)
    await stack.store._write(
        "test_last_use",
        "UPDATE risk_counters SET last_at_s = ? WHERE counter_key = ?",
        [at_s, f"c:{card_hash}|t:{terminal_id}|l"],
    )


async def test_five_minutes_between_uses_of_a_card_on_a_terminal(
    stack: Stack, tmp_path: Path
) -> None:
    card = stack.cards[3]
    terminal = await stack.terminal()
    assert "card-terminal-interval" not in await fired(stack, await buy(terminal, card, 1_401))
    again = await buy(terminal, card, 1_402)  # at once: within 5 minutes
    assert again.approved and (await fired(stack, again))["card-terminal-interval"] == "flag"
    await set_last_use(stack, card, "10000001", await switch_local_s(stack) - 300)
    later = await buy(terminal, card, 1_403)  # 300 s (or a second more) after: at the limit
    assert later.approved and "card-terminal-interval" not in await fired(stack, later)
    use_rules(stack, tmp_path, declining("card-terminal-interval"))
    before = await stack.balance(card)
    refused = await buy(terminal, card, 1_404)  # within 5 minutes of the last
    assert refused.response_code == "65"
    assert await stack.balance(card) == before


async def test_a_round_amount_of_10000_is_flagged_and_declines_59_when_switched(
    stack: Stack, tmp_path: Path
) -> None:
    card = stack.cards[3]
    for terminal_id, amount in (("10000001", 999_999), ("10000002", 1_000_001)):
        outcome = await buy(await stack.terminal(terminal_id), card, amount)
        assert outcome.approved and "round-amount" not in await fired(stack, outcome)
    terminal = await stack.terminal("10000003")
    flagged = await buy(terminal, card, 1_000_000)
    assert flagged.approved and (await fired(stack, flagged))["round-amount"] == "flag"
    use_rules(stack, tmp_path, declining("round-amount"))
    before = await stack.balance(card)
    refused = await buy(await stack.terminal("10000004"), card, 2_000_000)
    assert refused.response_code == "59"
    assert await stack.balance(card) == before


def night_now(stack: Stack, text: str) -> str:
    """``text`` with business hours that leave the switch's present hour outside
    them (it is "night" now), the day's rollover moved out of the way."""
    assert stack.switch is not None and stack.switch.pipeline is not None
    hour = stack.switch.pipeline.services.local_now().hour
    start, end = ((hour + 1) % 24, (hour + 2) % 24) if hour < 22 else (1, 2)
    text = text.replace(
        "business_start = 09:00:00\nbusiness_end = 21:00:00",
        f"business_start = {start:02d}:00:00\nbusiness_end = {end:02d}:00:00",
    )
    assert f"business_start = {start:02d}:00:00" in text
    return text.replace("business_day_rollover = 21:00:00", "business_day_rollover = 00:00:00")


async def test_the_night_window_single_and_card_caps(stack: Stack, tmp_path: Path) -> None:
    use_rules(stack, tmp_path, night_now(stack, default_ruleset_text()))
    card = stack.cards[3]
    terminals = [await stack.terminal(f"1000000{n}") for n in range(1, 5)]
    at_single = await buy(terminals[0], card, 1_000_000)  # 10,000.00: at the single cap
    assert at_single.approved and "night" not in await fired(stack, at_single)
    over_single = await buy(terminals[1], card, 1_000_001)
    assert over_single.approved and (await fired(stack, over_single))["night"] == "flag"
    # The card's night: 20,000.01 so far, over its 20,000.00: flagged from now on.
    assert (await fired(stack, await buy(terminals[2], card, 100)))["night"] == "flag"


async def test_the_night_card_cap_declines_59_when_switched(stack: Stack, tmp_path: Path) -> None:
    use_rules(stack, tmp_path, declining("night", night_now(stack, default_ruleset_text())))
    card = stack.cards[3]
    terminals = [await stack.terminal(f"1000000{n}") for n in range(1, 4)]
    assert (await buy(terminals[0], card, 999_999)).approved
    assert (await buy(terminals[1], card, 1_000_001 - 100)).approved  # 19,999.00 so far
    assert (await buy(terminals[2], card, 100)).approved  # 20,000.00: exactly the cap
    before = await stack.balance(card)
    refused = await buy(terminals[0], card, 1)
    assert refused.response_code == "59"
    assert await stack.balance(card) == before
