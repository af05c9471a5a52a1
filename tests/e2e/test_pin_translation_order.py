"""The switch starts the PIN translation and the network MAC alongside the request
MAC check; these pin that their outcomes still count only in the route's order
(terminal-link §7)."""

from __future__ import annotations

from posp.framing import frame_binary
from posp.iso8583 import decode_terminal, encode_terminal
from terminals.cards import TerminalCard
from tests.e2e.conftest import Stack
from tests.e2e.tamper import send_raw, tampered

BAD_PIN_BLOCK = b"\x13" * 8  # undecipherable under the terminal's TPK (99 on its own)


async def test_bad_mac_with_a_bad_pin_block_answers_a0(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    assert stack.switch is not None
    machine = terminal.machine
    frame = decode_terminal(machine.purchase(card, 100, pin=card.pin)[2:])
    machine.on_comms_error(after_send=False)  # the machine's copy is not sent
    frame.message.fields[52] = BAD_PIN_BLOCK  # F64 kept: it no longer verifies
    answer = await send_raw(stack.switch.port, frame_binary(encode_terminal(frame)))
    assert answer.message[39] == "A0" and 64 not in answer.message


async def test_duplicate_with_a_bad_pin_block_answers_94_not_99(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    assert stack.switch is not None
    machine = terminal.machine
    first = machine.purchase(card, 100, pin=card.pin)
    machine.on_comms_error(after_send=False)
    assert (await send_raw(stack.switch.port, first)).message[39] == "00"
    again = tampered(machine, first, {52: BAD_PIN_BLOCK})  # same trace, valid MAC
    assert (await send_raw(stack.switch.port, again)).message[39] == "94"


async def test_good_mac_with_a_bad_pin_block_answers_99(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    assert stack.switch is not None
    machine = terminal.machine
    frame = tampered(machine, machine.purchase(card, 100, pin=card.pin), {52: BAD_PIN_BLOCK})
    machine.on_comms_error(after_send=False)
    answer = await send_raw(stack.switch.port, frame)
    assert answer.message[39] == "99" and answer.header[5] == "3"


async def test_a_purchase_sends_the_network_mac_made_alongside_the_terminal_mac_check(
    stack: Stack, card: TerminalCard
) -> None:
    """posp.pipeline.premac: the purchase's network MAC was computed with the M8/CA
    (and the issuer accepted it); a void, whose MAB needs its original, is MACed
    when sent."""
    assert stack.switch is not None
    link = stack.switch.link
    terminal = await stack.terminal()
    used = link.early_macs_used
    purchase = await terminal.transact(lambda m: m.purchase(card, 4100, pin=card.pin))
    assert purchase.approved and link.early_macs_used == used + 1
    void = await terminal.transact(lambda m: m.purchase_void(purchase.trace))
    assert void.approved and link.early_macs_used == used + 1


async def test_a_request_refused_after_the_early_mac_still_answers_its_code(
    stack: Stack, card: TerminalCard
) -> None:
    """The early network MAC ran, then the journal refused the duplicate: 94, nothing
    sent (the STAN it reserved is just skipped)."""
    terminal = await stack.terminal()
    machine = terminal.machine
    frame = machine.purchase(card, 4200, pin=card.pin)
    first = await terminal.exchange(frame)
    assert first.approved
    before = await stack.balance(card)
    assert stack.switch is not None
    again = await send_raw(stack.switch.port, frame)
    assert again.message[39] == "94" and await stack.balance(card) == before
