"""The switch starts the PIN translation alongside the request MAC check; these pin
that its outcome still counts only in the route's order (terminal-link §7)."""

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
