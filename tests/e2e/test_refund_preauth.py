"""Refunds (partial, limited to the original), pre-authorization, completion
(≤ 115 %), pre-auth void and completion void end to end."""

from __future__ import annotations

from terminals.cards import TerminalCard
from terminals.session import TerminalSession
from tests.e2e.conftest import Stack
from tests.e2e.tamper import send_raw, tampered


async def approved_purchase(
    terminal: TerminalSession, card: TerminalCard, amount: int
) -> tuple[str, str]:
    outcome = await terminal.transact(lambda m: m.purchase(card, amount, pin=card.pin))
    assert outcome.approved and outcome.message is not None
    return outcome.message.text(37), outcome.message.text(13)


async def test_partial_refunds_never_exceed_the_original(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    rrn, date = await approved_purchase(terminal, card, 5000)
    first = await terminal.transact(lambda m: m.refund(card, rrn, date, 2000))
    second = await terminal.transact(lambda m: m.refund(card, rrn, date, 2500))
    assert first.approved and second.approved
    too_much = await terminal.transact(lambda m: m.refund(card, rrn, date, 1000))
    assert too_much.response_code == "64"
    assert await stack.balance(card) == before - 5000 + 2000 + 2500
    rest = await terminal.transact(lambda m: m.refund(card, rrn, date, 500))
    assert rest.approved and await stack.balance(card) == before


async def test_refund_of_an_unknown_rrn_answers_25(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    _rrn, date = await approved_purchase(terminal, card, 5000)
    outcome = await terminal.transact(lambda m: m.refund(card, "019999999999", date, 100))
    assert outcome.response_code == "25"


async def test_a_declined_refund_releases_its_reservation(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    rrn, date = await approved_purchase(terminal, card, 3000)
    assert stack.issuer is not None
    stack.issuer.rules.forced_by_pan[card.pan] = "05"
    declined = await terminal.transact(lambda m: m.refund(card, rrn, date, 3000))
    assert declined.response_code == "05"
    stack.issuer.rules.forced_by_pan.clear()
    after_purchase = await stack.balance(card)
    full = await terminal.transact(lambda m: m.refund(card, rrn, date, 3000))
    assert full.approved and await stack.balance(card) == after_purchase + 3000


async def test_refund_of_a_voided_purchase_answers_12(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    outcome = await terminal.transact(lambda m: m.purchase(card, 800, pin=card.pin))
    assert outcome.message is not None
    assert (await terminal.transact(lambda m: m.purchase_void(outcome.trace))).approved
    rrn, date = outcome.message.text(37), outcome.message.text(13)
    refund = await terminal.transact(lambda m: m.refund(card, rrn, date, 800))
    assert refund.response_code == "12"


async def test_void_of_a_partly_refunded_purchase_answers_12_and_moves_no_money(
    stack: Stack, card: TerminalCard
) -> None:
    """The void would give the whole amount back on top of the refund: the
    cardholder would get 1,300 back for a 1,000 purchase."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    outcome = await terminal.transact(lambda m: m.purchase(card, 1000, pin=card.pin))
    assert outcome.approved and outcome.message is not None
    assert await stack.balance(card) == before - 1000
    rrn, date = outcome.message.text(37), outcome.message.text(13)
    assert (await terminal.transact(lambda m: m.refund(card, rrn, date, 300))).approved
    assert await stack.balance(card) == before - 700
    # The simulated terminal keeps count too (its fleet mix then never voids it).
    assert terminal.machine.state.journal[outcome.trace].refunded_minor == 300
    void = await terminal.transact(lambda m: m.purchase_void(outcome.trace))
    assert void.response_code == "12"
    assert await stack.balance(card) == before - 700
    assert stack.store is not None
    original = await stack.store.find_by_trace("10000001", "000001", outcome.trace)
    assert original is not None and original.state == "approved"
    assert original.refunded_minor == 300
    rest = await terminal.transact(lambda m: m.refund(card, rrn, date, 700))  # still refundable
    assert rest.approved and await stack.balance(card) == before


async def test_preauth_holds_and_completion_up_to_115_percent_debits(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before, held = await stack.balance(card), await stack.held(card)
    preauth = await terminal.transact(lambda m: m.preauth(card, 10000, pin=card.pin))
    assert preauth.approved and await stack.held(card) == held + 10000
    over = await terminal.transact(lambda m: m.completion(preauth.trace, 11501))
    assert over.response_code == "64" and await stack.held(card) == held + 10000
    completion = await terminal.transact(lambda m: m.completion(preauth.trace, 11500))
    assert completion.approved
    assert await stack.balance(card) == before - 11500 and await stack.held(card) == held
    again = await terminal.transact(lambda m: m.completion(preauth.trace, 100))
    assert again.response_code == "12" and await stack.balance(card) == before - 11500
    void = await terminal.transact(lambda m: m.completion_void(completion.trace))
    assert void.approved and await stack.balance(card) == before
    # Voiding the completion leaves the pre-auth consumed (as the issuer does).
    assert await stack.held(card) == held


async def test_preauth_void_releases_the_hold_once(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    held = await stack.held(card)
    preauth = await terminal.transact(lambda m: m.preauth(card, 4000, pin=card.pin))
    assert preauth.approved
    machine = terminal.machine
    wrong_amount = tampered(machine, machine.preauth_void(preauth.trace), {4: "000000003999"})
    assert (await terminal.exchange(wrong_amount)).response_code == "64"
    void_frame = machine.preauth_void(preauth.trace)
    void = await terminal.exchange(void_frame)
    assert void.approved and await stack.held(card) == held
    assert stack.switch is not None
    repeat = tampered(machine, void_frame, {11: "900001"})  # the machine knows it is voided
    assert (await send_raw(stack.switch.port, repeat)).message[39] == "12"
    assert await stack.held(card) == held


async def test_completion_with_an_unknown_auth_code_answers_25(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    preauth = await terminal.transact(lambda m: m.preauth(card, 4000, pin=card.pin))
    machine = terminal.machine
    frame = tampered(
        machine,
        machine.completion(preauth.trace, 4000),
        {38: "ZZZZZZ", 61: "0" * 12 + machine.state.clock_date},
    )
    assert (await terminal.exchange(frame)).response_code == "25"
