"""Transfers (terminal-link §9, network-link §8) end to end over real sockets:
beneficiary check, transfer, void, reversal; both legs' balances after each step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from issuer_sim.rules import DROP_AMOUNT_MINOR
from posp.tms.params import ParamValues, Scope
from terminals.cards import TerminalCard
from terminals.session import TerminalSession
from terminals.state import PendingReversal
from tests.e2e.conftest import Stack, eventually
from tests.e2e.tamper import send_raw, tampered
from tests.e2e.transferstack import (
    OTHER_ISSUER_ID,
    OTHER_ISSUER_PAN,
    UNKNOWN_PAN,
    USD_PAN,
    balances,
    card_by_pan,
    transfer_stack,
)

TERMINAL = "10000001"
BATCH = "000001"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    running = transfer_stack(tmp_path)
    await running.start_issuer()
    await running.start_switch()
    yield running
    await running.close()


@pytest.fixture
def payer(stack: Stack) -> TerminalCard:
    return stack.cards[0]


@pytest.fixture
def payee(stack: Stack) -> TerminalCard:
    return stack.cards[1]


async def _entry_state(stack: Stack, trace: str) -> str | None:
    assert stack.store is not None
    entry = await stack.store.find_by_trace(TERMINAL, BATCH, trace)
    return None if entry is None else entry.state


async def _saf_empty(stack: Stack) -> bool:
    assert stack.store is not None
    return await stack.store.saf_depth() == 0


async def _transfer(
    terminal: TerminalSession, payer: TerminalCard, payee_pan: str, amount_minor: int
) -> tuple[str, str | None]:
    outcome = await terminal.transact(
        lambda m: m.transfer(payer, payee_pan, amount_minor, payer.pin)
    )
    return outcome.trace, outcome.response_code


async def test_beneficiary_check_answers_the_masked_holder_name(stack: Stack) -> None:
    """00 with F63 = card organisation + the masked name; F44 names the card's issuer."""
    terminal = await stack.terminal()
    outcome = await terminal.transact(lambda m: m.beneficiary_check(stack.cards[1]))
    assert outcome.response_code == "00" and outcome.message is not None
    assert outcome.message.text(63) == "CUP** SI"
    other = await terminal.transact(
        lambda m: m.beneficiary_check(card_by_pan(stack, OTHER_ISSUER_PAN))
    )
    assert other.response_code == "00" and other.message is not None
    assert other.message.text(63) == "CUP**** DUO"
    assert other.message.text(44)[:11].strip() == OTHER_ISSUER_ID


async def test_beneficiary_check_of_unknown_or_foreign_currency_account(stack: Stack) -> None:
    """A3 for an account the network does not know, A1 for one kept in another currency."""
    terminal = await stack.terminal()
    unknown = TerminalCard(UNKNOWN_PAN, "3012", "123456")
    assert (await terminal.transact(lambda m: m.beneficiary_check(unknown))).response_code == "A3"
    usd = card_by_pan(stack, USD_PAN)
    assert (await terminal.transact(lambda m: m.beneficiary_check(usd))).response_code == "A1"


@pytest.mark.parametrize("payee_pan", [None, OTHER_ISSUER_PAN], ids=["on_us", "other_issuer"])
async def test_transfer_debits_the_payer_and_credits_the_payee(
    stack: Stack, payer: TerminalCard, payee: TerminalCard, payee_pan: str | None
) -> None:
    receiver = payee if payee_pan is None else card_by_pan(stack, payee_pan)
    terminal = await stack.terminal()
    before = await balances(stack, payer, receiver)
    trace, code = await _transfer(terminal, payer, receiver.pan, 12_345)
    assert code == "00"
    assert await balances(stack, payer, receiver) == (before[0] - 12_345, before[1] + 12_345)
    assert await _entry_state(stack, trace) == "approved"


@pytest.mark.parametrize(
    ("payee_pan", "code"), [(USD_PAN, "A1"), (UNKNOWN_PAN, "A3")], ids=["A1", "A3"]
)
async def test_transfer_to_a_bad_account_moves_nothing(
    stack: Stack, payer: TerminalCard, payee_pan: str, code: str
) -> None:
    terminal = await stack.terminal()
    usd = card_by_pan(stack, USD_PAN)
    before = await balances(stack, payer, usd)
    assert (await _transfer(terminal, payer, payee_pan, 5_000))[1] == code
    assert await balances(stack, payer, usd) == before


async def test_insufficient_funds_moves_neither_leg(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    """51 when the paying card cannot cover the amount; the payee gets nothing."""
    assert stack.issuer is not None
    stack.issuer.ledger.accounts[payer.pan].balance_minor = 500
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    assert (await _transfer(terminal, payer, payee.pan, 501))[1] == "51"
    assert await balances(stack, payer, payee) == before


async def test_over_the_terminal_cap_is_61_before_anything_is_sent(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    """61 from the switch (default cap 5,000,000 fen): journaled declined, never sent."""
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    trace, code = await _transfer(terminal, payer, payee.pan, 5_000_001)
    assert code == "61" and stack.store is not None
    entry = await stack.store.find_by_trace(TERMINAL, BATCH, trace)
    assert entry is not None and entry.state == "declined" and entry.network_stan is None
    assert await balances(stack, payer, payee) == before
    assert (await _transfer(terminal, payer, payee.pan, 5_000_000))[1] == "00"


async def test_a_terminal_cap_above_the_setting_overrides_it(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    """The terminal's own key 39 replaces ``limits.transfer_cap_minor`` (5,000,000),
    also upwards: the row's cap is the terminal's first, the setting's only without."""
    assert stack.switch is not None and stack.switch.tms is not None
    tms = stack.switch.tms
    await tms.tms.set_param_set(Scope.TERMINAL, TERMINAL, ParamValues(transfer_cap_minor=6_000_000))
    tms.forget(TERMINAL)
    terminal = await stack.terminal()
    assert (await _transfer(terminal, payer, payee.pan, 6_000_001))[1] == "61"
    assert (await _transfer(terminal, payer, payee.pan, 5_000_001))[1] == "00"


async def test_wrong_pin_is_55_and_moves_nothing(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    outcome = await terminal.transact(lambda m: m.transfer(payer, payee.pan, 2_000, "000000"))
    assert outcome.response_code == "55"
    assert await balances(stack, payer, payee) == before


async def test_bad_mac_is_a0_and_moves_nothing(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    terminal.machine.corrupt_next_mac()
    outcome = await terminal.transact(lambda m: m.transfer(payer, payee.pan, 2_000, payer.pin))
    assert outcome.response_code == "A0" and outcome.message is not None
    assert 64 not in outcome.message
    assert await terminal.prepare() is None  # the terminal reverses and signs in again
    assert await balances(stack, payer, payee) == before


async def test_repeated_trace_is_94_and_moves_once(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    assert (await _transfer(terminal, payer, payee.pan, 700))[1] == "00"
    terminal.machine.state.last_trace -= 1  # the next request reuses the same F11
    assert (await _transfer(terminal, payer, payee.pan, 700))[1] == "94"
    assert await balances(stack, payer, payee) == (before[0] - 700, before[1] + 700)


@pytest.mark.parametrize(
    "f62", [b"1116", b"1016622588000000000001", b"10196225880000000000A10"], ids=str
)
async def test_a_malformed_receiving_card_field_is_30(
    stack: Stack, payer: TerminalCard, payee: TerminalCard, f62: bytes
) -> None:
    """F62 not usage 10, a length that does not match, non-digits: 30, nothing moves."""
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    frame = terminal.machine.transfer(payer, payee.pan, 900, payer.pin)
    assert (
        await terminal.exchange(tampered(terminal.machine, frame, {62: f62}))
    ).response_code == "30"
    assert await balances(stack, payer, payee) == before


async def test_void_restores_both_legs_and_a_second_void_is_12(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    trace, code = await _transfer(terminal, payer, payee.pan, 4_321)
    assert code == "00"
    void = await terminal.transact(lambda m: m.transfer_void(trace))
    assert void.response_code == "00"
    assert await balances(stack, payer, payee) == before
    assert await _entry_state(stack, trace) == "voided"
    again = await terminal.transact(lambda m: m.transfer_void(trace, allow_voided=True))
    assert again.response_code == "12"
    assert await balances(stack, payer, payee) == before


async def test_timeout_98_is_reversed_by_the_switch_and_the_terminal_reversal_is_idempotent(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    """The issuer moves both legs but its answer is dropped: 98, the switch's 0420
    restores both legs once; the terminal's 0400 (and a repeat) changes nothing."""
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    frame = terminal.machine.transfer(payer, payee.pan, DROP_AMOUNT_MINOR, payer.pin)
    outcome = await terminal.exchange(frame)
    assert outcome.response_code == "98"
    await eventually(_saf_empty_and(stack, payer, payee, before))
    # A terminal that saw no answer in time reverses too (the 98 cleared nothing else).
    terminal.machine.state.pending_reversal = PendingReversal("transfer", frame[2:], "98")
    reversal = terminal.machine.reversal()
    assert (await terminal.exchange(reversal)).response_code == "00"
    assert stack.switch is not None
    assert (await send_raw(stack.switch.port, reversal)).message[39] == "00"
    await eventually(_saf_empty_and(stack, payer, payee, before))
    assert await _entry_state(stack, outcome.trace) in ("timed_out", "reversed")


async def test_reversal_of_an_answered_transfer_restores_both_legs_once(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    """The answer reached the switch but not the terminal: its 0400 (sent twice)
    restores both legs exactly once."""
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    assert stack.switch is not None
    frame = terminal.machine.transfer(payer, payee.pan, 3_000, payer.pin)
    assert (await send_raw(stack.switch.port, frame)).message[39] == "00"
    terminal.machine.on_timeout()
    assert await balances(stack, payer, payee) == (before[0] - 3_000, before[1] + 3_000)
    reversal = terminal.machine.reversal()
    assert (await terminal.exchange(reversal)).response_code == "00"
    await eventually(_saf_empty_and(stack, payer, payee, before))
    assert (await send_raw(stack.switch.port, reversal)).message[39] == "00"
    await eventually(_saf_empty_and(stack, payer, payee, before))


async def test_reversing_a_void_moves_both_legs_again(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    trace, _ = await _transfer(terminal, payer, payee.pan, 2_500)
    assert stack.switch is not None
    void = terminal.machine.transfer_void(trace)
    assert (await send_raw(stack.switch.port, void)).message[39] == "00"
    terminal.machine.on_timeout()
    assert await balances(stack, payer, payee) == before
    assert (await terminal.exchange(terminal.machine.reversal())).response_code == "00"
    moved = (before[0] - 2_500, before[1] + 2_500)
    await eventually(_saf_empty_and(stack, payer, payee, moved))
    assert await _entry_state(stack, trace) == "approved"


async def test_settlement_counts_transfers_as_debits(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    """A transfer and a voided one: the terminal's totals agree with the switch's."""
    terminal = await stack.terminal()
    trace, _ = await _transfer(terminal, payer, payee.pan, 1_111)
    await _transfer(terminal, payer, payee.pan, 2_222)
    assert (await terminal.transact(lambda m: m.transfer_void(trace))).approved
    outcome = await terminal.settle()
    assert outcome.approved and outcome.balanced is True
    assert stack.store is not None


def _saf_empty_and(
    stack: Stack, payer: TerminalCard, payee: TerminalCard, expected: tuple[int, ...]
):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await _saf_empty(stack) and await balances(stack, payer, payee) == expected

    return check


async def test_the_terminals_tms_transfer_cap_applies(
    stack: Stack, payer: TerminalCard, payee: TerminalCard
) -> None:
    """Key 39 of the terminal's parameters (terminal management) is its transfer cap."""
    assert stack.switch is not None and stack.switch.tms is not None
    tms = stack.switch.tms
    await tms.tms.set_param_set(Scope.TERMINAL, TERMINAL, ParamValues(transfer_cap_minor=2_000))
    tms.forget(TERMINAL)
    terminal = await stack.terminal()
    before = await balances(stack, payer, payee)
    assert (await _transfer(terminal, payer, payee.pan, 2_001))[1] == "61"
    assert await balances(stack, payer, payee) == before
    assert (await _transfer(terminal, payer, payee.pan, 2_000))[1] == "00"
