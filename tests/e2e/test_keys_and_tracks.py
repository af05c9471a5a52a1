"""Zone key exchange under load, and track-encrypted (004 sign-in) purchases."""

from __future__ import annotations

import asyncio

from posp.crypto.des import tdes_encrypt_ecb
from posp.crypto.pinblock import iso0_clear
from posp.iso8583 import decode_terminal, mask_pan
from terminals.cards import TerminalCard
from terminals.machine import TerminalMachine
from terminals.session import TerminalSession
from tests.e2e.conftest import Stack
from tests.e2e.tamper import tampered

TERMINALS = 10
PURCHASES_EACH = 20  # 200 in all


async def purchases(session: TerminalSession, card: TerminalCard, count: int) -> list[str | None]:
    codes = []
    for _ in range(count):
        outcome = await session.transact(lambda m: m.purchase(card, 100, pin=card.pin))
        codes.append(outcome.response_code)
    return codes


async def test_zpk_and_zak_rotation_under_load_fails_no_transaction(stack: Stack) -> None:
    sessions = [await stack.terminal(f"200000{i:02d}") for i in range(TERMINALS)]
    before = {card.pan: await stack.balance(card) for card in stack.cards}
    assert stack.issuer is not None
    load = [
        asyncio.create_task(purchases(s, stack.cards[i % len(stack.cards)], PURCHASES_EACH))
        for i, s in enumerate(sessions)
    ]
    await asyncio.sleep(0.05)
    assert await stack.issuer.initiate_key_exchange("1")  # ZPK
    await asyncio.sleep(0.05)
    assert await stack.issuer.initiate_key_exchange("2")  # ZAK
    results = await asyncio.gather(*load)
    codes = [code for batch in results for code in batch]
    assert len(codes) == TERMINALS * PURCHASES_EACH and set(codes) == {"00"}
    spent = sum([before[c.pan] - await stack.balance(c) for c in stack.cards])
    assert spent == 100 * TERMINALS * PURCHASES_EACH


async def test_track_encrypted_purchase_is_decrypted_with_the_tdk(
    stack: Stack, card: TerminalCard
) -> None:
    """004 sign-in + F53 digit 3 = 1: without F2/F14 the PAN (for the PIN block and
    the issuer) can only come from track 2 decrypted with the TDK."""
    terminal = await stack.terminal(variant="004", track_encryption=True)
    machine = terminal.machine
    assert machine.state.tdk is not None
    before = await stack.balance(card)
    built = machine.purchase(card, 900, pin=card.pin)
    assert decode_terminal(built[2:]).message.text(53)[2] == "1"
    frame = tampered(machine, built, {}, drop=(2, 14))
    outcome = await terminal.exchange(frame)
    assert outcome.approved and await stack.balance(card) == before - 900
    assert stack.store is not None
    entry = await stack.store.find_by_trace(machine.config.terminal_id, "000001", outcome.trace)
    assert entry is not None and entry.pan_masked == mask_pan(card.pan)


def _without_pan(machine: TerminalMachine, built: bytes, pin: str) -> bytes:
    """``built`` with F52 in ISO format 0 WITHOUT the PAN (F53 digit 1 = 1)."""
    pik = machine.state.pik
    assert pik is not None
    block = tdes_encrypt_ecb(pik, iso0_clear(pin, None))
    return tampered(machine, built, {52: block, 53: "1600000000000000"})


async def test_pin_block_without_pan_reaches_the_issuer_as_format_0_with_pan(
    stack: Stack, card: TerminalCard
) -> None:
    """F53 digit 1 = 1: the terminal's block carries no PAN, the network's must
    (network-link §6).  The switch goes CA (01 → 03) then CC (03 → 01 with the
    account); the issuer verifies the PIN against its PVV with the PAN."""
    terminal = await stack.terminal()
    machine = terminal.machine
    before = await stack.balance(card)
    outcome = await terminal.exchange(
        _without_pan(machine, machine.purchase(card, 700, pin=card.pin), card.pin)
    )
    assert outcome.response_code == "00" and await stack.balance(card) == before - 700
    wrong = "1111" if card.pin != "1111" else "2222"
    outcome = await terminal.exchange(
        _without_pan(machine, machine.purchase(card, 700, pin=wrong), wrong)
    )
    assert outcome.response_code == "55" and await stack.balance(card) == before - 700


async def test_pin_block_without_pan_and_no_card_number_is_a_format_error(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    machine = terminal.machine
    built = _without_pan(machine, machine.purchase(card, 700, pin=card.pin), card.pin)
    outcome = await terminal.exchange(tampered(machine, built, {}, drop=(2, 14, 35)))
    assert outcome.response_code == "30"
