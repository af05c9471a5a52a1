"""A 0400 naming a transaction type that is never reversed (a balance inquiry,
60.1 = 01, which carries no F4) is answered 12, not 30 (review finding 8)."""

from __future__ import annotations

from posp.framing import frame_binary
from posp.iso8583 import decode_terminal
from terminals.cards import TerminalCard
from tests.e2e.conftest import Stack
from tests.e2e.tamper import send_raw, tampered


async def test_a_reversal_of_a_balance_inquiry_is_answered_12(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    machine = terminal.machine
    inquiry = machine.balance(card)
    machine.in_flight = None
    machine.state.pending_reversal = None
    stripped = tampered(machine, inquiry, {39: "98"}, drop=(26, 35, 36, 52, 53))
    message = decode_terminal(stripped[2:]).message
    message.mti = "0400"
    message.fields.pop(64, None)
    assert stack.switch is not None
    answer = await send_raw(stack.switch.port, frame_binary(machine.encode(message, mac=True)))
    assert answer.message.mti == "0410" and answer.message.get(39) == "12"
