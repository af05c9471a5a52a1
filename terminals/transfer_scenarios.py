"""Conformance scenarios for transfers (terminal-link §9): each runs end to end on
the financial terminal and checks both cards' balances through balance inquiries
(F54) before and after, so a switch that moves one leg, or a leg twice, fails.

Cards (from the target's cards file): the payer is the catalogue's active CUP
card, the payee another active card in CNY, the A1 case needs an active card kept
in another currency.  Amounts: 99404 is dropped by the issuer simulator (timeout),
99451 is declined 51 by its demo rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from posp.iso8583 import decode_terminal
from posp.iso8583.fields import Balance
from terminals.cards import TerminalCard
from terminals.conformance import Scenario, ScenarioContext, ScenarioFailed, expect_code
from terminals.outcome import Event, Outcome
from terminals.session import TerminalSession
from terminals.state import PendingReversal
from terminals.txn import TxnKind

FIN: Final = 0
CNY: Final = "156"
DROP_AMOUNT_MINOR: Final = 99404  # issuer_sim.rules.DROP_AMOUNT_MINOR
FORCE_51_AMOUNT_MINOR: Final = 99451  # issuer_sim.rules.FORCE_51_AMOUNT_MINOR
UNKNOWN_ACCOUNT: Final = "6225889999999999990"
AMOUNT_MINOR: Final = 1_234
#: Polls of the balances while the switch's own 0420 travels (after a timeout).
RESTORE_POLLS: Final = 50
RESTORE_POLL_S: Final = 0.1


async def _session(ctx: ScenarioContext) -> TerminalSession:
    session = ctx.terminal(FIN)
    blocking = await session.prepare()
    if blocking is not None:
        raise ScenarioFailed(f"could not prepare terminal: {blocking.response_code}")
    return session


def _payee(ctx: ScenarioContext, currency: str = CNY) -> TerminalCard:
    payer = ctx.card
    for card in ctx.target.cards:
        if card.active and card.pan != payer.pan and card.currency == currency:
            return card
    raise ScenarioFailed(f"the cards file has no second active card in currency {currency}")


async def _balance(session: TerminalSession, card: TerminalCard) -> int:
    outcome = await session.transact(lambda m: m.balance(card, card.pin))
    expect_code(outcome, "00", "balance inquiry")
    assert outcome.message is not None
    balance = Balance.parse(outcome.message.text(54))
    return balance.amount_minor if balance.sign == "C" else -balance.amount_minor


async def _balances(session: TerminalSession, *cards: TerminalCard) -> tuple[int, ...]:
    return tuple([await _balance(session, card) for card in cards])


async def _expect_balances(
    session: TerminalSession, cards: tuple[TerminalCard, ...], expected: tuple[int, ...], step: str
) -> None:
    got = await _balances(session, *cards)
    if got != expected:
        raise ScenarioFailed(f"{step}: balances {got}, expected {expected}")


def _moved(before: tuple[int, ...], amount_minor: int) -> tuple[int, ...]:
    return (before[0] - amount_minor, before[1] + amount_minor)


async def _transfer(
    session: TerminalSession, payer: TerminalCard, payee_pan: str, amount_minor: int, pin: str
) -> Outcome:
    return await session.transact(lambda m: m.transfer(payer, payee_pan, amount_minor, pin))


Check = Callable[[ScenarioContext, TerminalSession, TerminalCard, TerminalCard], Awaitable[int]]


async def _with_balances(ctx: ScenarioContext, check: Check, currency: str = CNY) -> None:
    """Run ``check`` between two balance readings of payer and payee; it returns the
    amount that must have moved from the one to the other."""
    session = await _session(ctx)
    payer, payee = ctx.card, _payee(ctx, currency)
    before = await _balances(session, payer, payee)
    moved_minor = await check(ctx, session, payer, payee)
    await _expect_balances(session, (payer, payee), _moved(before, moved_minor), "after")


async def beneficiary_check(ctx: ScenarioContext) -> None:
    session = await _session(ctx)
    outcome = await session.transact(lambda m: m.beneficiary_check(_payee(ctx)))
    expect_code(outcome, "00", "beneficiary check")
    assert outcome.message is not None
    f63 = str(outcome.message.get(63) or "")
    if len(f63) <= 3 or "*" not in f63:
        raise ScenarioFailed("the beneficiary check's F63 carries no masked holder name")


async def _approved(
    ctx: ScenarioContext, s: TerminalSession, p: TerminalCard, q: TerminalCard
) -> int:
    expect_code(await _transfer(s, p, q.pan, AMOUNT_MINOR, p.pin), "00", "transfer")
    return AMOUNT_MINOR


async def _a1(ctx: ScenarioContext, s: TerminalSession, p: TerminalCard, q: TerminalCard) -> int:
    expect_code(await _transfer(s, p, q.pan, AMOUNT_MINOR, p.pin), "A1", "to a USD account")
    return 0


async def _a3(ctx: ScenarioContext, s: TerminalSession, p: TerminalCard, q: TerminalCard) -> int:
    outcome = await _transfer(s, p, UNKNOWN_ACCOUNT, AMOUNT_MINOR, p.pin)
    expect_code(outcome, "A3", "to an unknown account")
    return 0


async def _51(ctx: ScenarioContext, s: TerminalSession, p: TerminalCard, q: TerminalCard) -> int:
    outcome = await _transfer(s, p, q.pan, FORCE_51_AMOUNT_MINOR, p.pin)
    expect_code(outcome, "51", "insufficient funds")
    return 0


async def _61(ctx: ScenarioContext, s: TerminalSession, p: TerminalCard, q: TerminalCard) -> int:
    over = ctx.target.transfer_cap_minor + 1
    expect_code(await _transfer(s, p, q.pan, over, p.pin), "61", "over the terminal's cap")
    return 0


async def _55(ctx: ScenarioContext, s: TerminalSession, p: TerminalCard, q: TerminalCard) -> int:
    wrong = "0000" if p.pin != "0000" else "1111"
    expect_code(await _transfer(s, p, q.pan, AMOUNT_MINOR, wrong), "55", "wrong PIN")
    return 0


async def _a0(ctx: ScenarioContext, s: TerminalSession, p: TerminalCard, q: TerminalCard) -> int:
    s.machine.corrupt_next_mac()
    outcome = await _transfer(s, p, q.pan, AMOUNT_MINOR, p.pin)
    expect_code(outcome, "A0", "wrong MAC")
    if outcome.message is not None and 64 in outcome.message:
        raise ScenarioFailed("the A0 answer carries F64")
    await _session(ctx)  # the terminal reverses and signs in again
    return 0


async def _94(ctx: ScenarioContext, s: TerminalSession, p: TerminalCard, q: TerminalCard) -> int:
    expect_code(await _transfer(s, p, q.pan, AMOUNT_MINOR, p.pin), "00", "transfer")
    s.machine.state.last_trace -= 1  # the next request reuses the same F11
    expect_code(await _transfer(s, p, q.pan, AMOUNT_MINOR, p.pin), "94", "repeated trace")
    return AMOUNT_MINOR


async def _void(ctx: ScenarioContext, s: TerminalSession, p: TerminalCard, q: TerminalCard) -> int:
    outcome = await _transfer(s, p, q.pan, AMOUNT_MINOR, p.pin)
    expect_code(outcome, "00", "transfer")
    expect_code(await s.transact(lambda m: m.transfer_void(outcome.trace)), "00", "void")
    return 0


async def _void_twice(
    ctx: ScenarioContext, s: TerminalSession, p: TerminalCard, q: TerminalCard
) -> int:
    trace = (await _transfer(s, p, q.pan, AMOUNT_MINOR, p.pin)).trace
    expect_code(await s.transact(lambda m: m.transfer_void(trace)), "00", "void")
    again = await s.transact(lambda m: m.transfer_void(trace, allow_voided=True))
    expect_code(again, "12", "second void")
    return 0


async def _reverse_until_restored(
    s: TerminalSession,
    frame: bytes,
    times: int,
    cards: tuple[TerminalCard, ...],
    expected: tuple[int, ...],
) -> None:
    """Send the 0400 of ``frame`` ``times`` times (00 each), then wait until the
    balances are ``expected`` (the switch's own 0420 may still be travelling)."""
    machine = s.machine
    for n in range(times):
        machine.state.pending_reversal = PendingReversal(TxnKind.TRANSFER.value, frame[2:], "98")
        expect_code(await s.exchange(machine.reversal()), "00", f"reversal {n + 1}")
    for _ in range(RESTORE_POLLS):
        if await _balances(s, *cards) == expected:
            return
        await asyncio.sleep(RESTORE_POLL_S)
    await _expect_balances(s, cards, expected, "after the reversal")


async def reversal_after_timeout(ctx: ScenarioContext) -> None:
    """98 (or no answer): the issuer moved both legs; the reversals restore them once."""
    session = await _session(ctx)
    payer, payee = ctx.card, _payee(ctx)
    before = await _balances(session, payer, payee)
    machine = ctx.machine(FIN)
    slow = ctx.session(machine, timeout_s=ctx.target.drop_timeout_s)
    frame = machine.transfer(payer, payee.pan, DROP_AMOUNT_MINOR, payer.pin)
    outcome = await slow.exchange(frame)
    if outcome.event is Event.RESPONSE and outcome.response_code != "98":
        raise ScenarioFailed(
            f"dropped transfer: expected 98 or no answer, got {outcome.response_code}"
        )
    await _reverse_until_restored(session, frame, 1, (payer, payee), before)


async def reversal_repeated(ctx: ScenarioContext) -> None:
    """An approved transfer whose answer the terminal lost: its 0400 twice restores
    both legs once."""
    session = await _session(ctx)
    payer, payee = ctx.card, _payee(ctx)
    before = await _balances(session, payer, payee)
    frame = session.machine.transfer(payer, payee.pan, AMOUNT_MINOR, payer.pin)
    expect_code(await session.exchange(frame), "00", "transfer")
    trace = decode_terminal(frame[2:]).message.text(11)
    session.machine.state.journal.pop(trace, None)  # as if the answer never arrived
    await _reverse_until_restored(session, frame, 2, (payer, payee), before)


def _case(name: str, description: str, check: Check, currency: str = CNY) -> Scenario:
    async def run(ctx: ScenarioContext) -> None:
        await _with_balances(ctx, check, currency)

    return Scenario(name, description, "transfer", run)


TRANSFER_CATALOGUE: Final[tuple[Scenario, ...]] = (
    Scenario(
        "transfer_beneficiary_check",
        "beneficiary check 0100/330000: 00 with the masked holder name in F63",
        "transfer",
        beneficiary_check,
    ),
    _case("transfer_approved", "transfer 00: payer debited, payee credited once", _approved),
    _case(
        "transfer_a1", "transfer to an account in another currency: A1, nothing moves", _a1, "840"
    ),
    _case("transfer_a3", "transfer to an unknown account: A3, nothing moves", _a3),
    _case("transfer_51", "amount 99451: 51 insufficient funds, nothing moves", _51),
    _case("transfer_61", "over the terminal's transfer cap: 61, nothing moves", _61),
    _case("transfer_55", "wrong PIN: 55, nothing moves", _55),
    _case("transfer_a0", "wrong MAC: A0 without F64, nothing moves", _a0),
    _case("transfer_94", "repeated trace: 94, the money moved once", _94),
    _case("transfer_void", "void 00 restores both legs", _void),
    _case("transfer_void_twice", "second void of a transfer: 12, restored once", _void_twice),
    Scenario(
        "transfer_reversal_after_timeout",
        "amount 99404 dropped upstream: 98, then both legs restored exactly once",
        "transfer",
        reversal_after_timeout,
    ),
    Scenario(
        "transfer_reversal_repeated",
        "the same 0400 twice: 00 both times, both legs restored once",
        "transfer",
        reversal_repeated,
    ),
)
