"""Terminal-link §7 response code 13 (invalid amount) for a zero F4, checked after
the MAC (review finding 4), and §1 header digit 6 = 3 on every answer to a terminal
whose working keys are unusable (review finding 5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from posp.iso8583 import TerminalFrame
from terminals.cards import TerminalCard
from terminals.machine import TerminalMachine
from tests.e2e.conftest import Stack
from tests.e2e.tamper import send_raw, tampered

ZERO = "000000000000"


def fresh(machine: TerminalMachine, build: Callable[[TerminalMachine], bytes]) -> bytes:
    """A frame from ``machine`` that the machine does not wait an answer for."""
    frame = build(machine)
    machine.in_flight = None
    machine.state.pending_reversal = None
    return frame


async def _zero_amount_answer(stack: Stack, card: TerminalCard, route: str) -> TerminalFrame:
    terminal = await stack.terminal()
    machine = terminal.machine
    purchase = await terminal.transact(lambda m: m.purchase(card, 500))
    assert purchase.approved and purchase.message is not None
    rrn, date = purchase.message.text(37), purchase.message.text(13)
    builders: dict[str, Callable[[Any], bytes]] = {
        "purchase": lambda m: m.purchase(card, 1),
        "preauth": lambda m: m.preauth(card, 1),
        "refund": lambda m: m.refund(card, rrn, date, 1),
        "purchase_void": lambda m: m.purchase_void(purchase.trace),
    }
    frame = tampered(machine, fresh(machine, builders[route]), {4: ZERO})
    assert stack.switch is not None
    return await send_raw(stack.switch.port, frame)


@pytest.mark.parametrize("route", ["purchase", "preauth", "refund", "purchase_void"])
async def test_a_zero_amount_is_answered_13(stack: Stack, card: TerminalCard, route: str) -> None:
    answer = await _zero_amount_answer(stack, card, route)
    assert answer.message.get(39) == "13"


async def test_a_zero_amount_with_a_bad_mac_is_answered_a0(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    machine = terminal.machine
    frame = bytearray(tampered(machine, fresh(machine, lambda m: m.purchase(card, 1)), {4: ZERO}))
    frame[-1] ^= 1
    assert stack.switch is not None
    answer = await send_raw(stack.switch.port, bytes(frame))
    assert answer.message.get(39) == "A0"


async def test_header_digit_6_asks_for_a_sign_in_on_echo_and_sign_off_without_keys(
    stack: Stack,
) -> None:
    terminal = await stack.terminal()
    machine = terminal.machine
    assert stack.switch is not None
    port = stack.switch.port
    with_keys = await send_raw(port, fresh(machine, lambda m: m.echo()))
    assert with_keys.message.get(39) == "00" and with_keys.header[5] == "0"
    signed_off = await send_raw(port, fresh(machine, lambda m: m.sign_off()))
    assert signed_off.message.get(39) == "00" and signed_off.header[5] == "3"
    echo = await send_raw(port, fresh(machine, lambda m: m.echo()))
    assert echo.message.get(39) == "00" and echo.header[5] == "3"
    signed_in = await send_raw(port, fresh(machine, lambda m: m.sign_in("003")))
    assert signed_in.message.get(39) == "00" and signed_in.header[5] == "0"
