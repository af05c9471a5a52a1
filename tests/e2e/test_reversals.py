"""Reversals (0400) and store-and-forward (0420) end to end: exactly-once undo at
the issuer, also across a switch restart; 98 on a dropped answer; 91 when the
network is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from issuer_sim.rules import DROP_AMOUNT_MINOR
from posp.errors import HsmTimeout
from posp.iso8583 import EncodedNetworkMessage
from posp.network import zone
from terminals.cards import TerminalCard
from terminals.session import TerminalSession
from tests.e2e.conftest import Stack, eventually
from tests.e2e.tamper import send_raw


async def answered_but_lost(stack: Stack, terminal: TerminalSession, frame: bytes) -> None:
    """Send ``frame`` on another connection (the switch answers), then tell the
    machine its request timed out: its reversal becomes due."""
    assert stack.switch is not None
    answer = await send_raw(stack.switch.port, frame)
    assert answer.message[39] == "00"
    terminal.machine.on_timeout()


async def test_reversal_restores_the_balance_once_even_when_repeated(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    await answered_but_lost(stack, terminal, terminal.machine.purchase(card, 2500, pin=card.pin))
    assert await stack.balance(card) == before - 2500
    reversal = terminal.machine.reversal()
    outcome = await terminal.exchange(reversal)
    assert outcome.response_code == "00"
    await eventually(lambda: stack.balance(card), timeout_s=5)
    await eventually(_equals(stack, card, before))
    assert stack.switch is not None
    repeat = await send_raw(stack.switch.port, reversal)
    assert repeat.message[39] == "00"
    assert stack.store is not None
    await eventually(_saf_empty(stack))
    assert await stack.balance(card) == before
    original = await stack.store.find_by_trace("10000001", "000001", outcome.trace)
    assert original is not None and original.state == "reversed"


async def test_reversing_a_void_reinstates_the_purchase(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    purchase = await terminal.transact(lambda m: m.purchase(card, 1500, pin=card.pin))
    await answered_but_lost(stack, terminal, terminal.machine.purchase_void(purchase.trace))
    assert await stack.balance(card) == before
    assert (await terminal.exchange(terminal.machine.reversal())).response_code == "00"
    await eventually(_equals(stack, card, before - 1500))
    assert stack.store is not None
    original = await stack.store.find_by_trace("10000001", "000001", purchase.trace)
    assert original is not None and original.state == "approved"
    terminal.machine.state.journal[purchase.trace].voided = False
    void = await terminal.transact(lambda m: m.purchase_void(purchase.trace))
    assert void.approved and await stack.balance(card) == before


async def test_dropped_answer_gives_98_and_the_queued_0420_restores_the_balance(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    outcome = await terminal.transact(lambda m: m.purchase(card, DROP_AMOUNT_MINOR, pin=card.pin))
    assert outcome.response_code == "98"
    assert stack.store is not None
    entry = await stack.store.find_by_trace("10000001", "000001", outcome.trace)
    assert entry is not None and entry.state == "timed_out" and entry.network_stan is not None
    await eventually(_equals(stack, card, before))
    await eventually(_saf_empty(stack))


async def test_an_answer_whose_mac_fails_gives_98_without_its_fields_and_is_reversed(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issuer approves but its 0210's MAC does not verify: the switch had already
    started the terminal's answer from that 0210 (alongside the check); it answers
    98 instead, with none of the unverified fields (no auth code, no issuer id),
    and queues a 0420 that restores the balance."""

    async def wrong_mac(_encoded: EncodedNetworkMessage) -> str | None:
        return None

    await _purchase_whose_0210_check_is(stack, card, monkeypatch, wrong_mac)


async def _purchase_whose_0210_check_is(
    stack: Stack,
    card: TerminalCard,
    monkeypatch: pytest.MonkeyPatch,
    check: Callable[[EncodedNetworkMessage], Awaitable[str | None]],
) -> None:
    """A PIN purchase whose 0210 MAC check is ``check`` (other checks unchanged): 98
    without the 0210's fields, and the balance restored by the queued 0420."""
    verify = zone.verify_encoded

    async def patched(hsm: Any, zak: Any, encoded: EncodedNetworkMessage) -> str | None:
        if encoded.message.mti == "0210":
            return await check(encoded)
        return await verify(hsm, zak, encoded)

    monkeypatch.setattr(zone, "verify_encoded", patched)
    terminal = await stack.terminal()
    before = await stack.balance(card)
    outcome = await terminal.transact(lambda m: m.purchase(card, 3300, pin=card.pin))
    await _answered_98_without_the_answers_fields(stack, outcome)
    await eventually(_equals(stack, card, before))
    await eventually(_saf_empty(stack))


async def _answered_98_without_the_answers_fields(stack: Stack, outcome: Any) -> None:
    """98 with the switch's own F44 (blank issuer id, not the issuer's), nothing of
    the unchecked 0210 journaled (auth code, card organisation)."""
    assert outcome.response_code == "98" and outcome.message is not None
    assert outcome.message.text(44)[:11] == " " * 11
    assert stack.store is not None
    entry = await stack.store.find_by_trace("10000001", "000001", outcome.trace)
    assert entry is not None and entry.state == "timed_out"
    assert entry.auth_code is None and entry.card_org is None


async def test_an_answer_the_hsm_cannot_check_gives_98_and_is_reversed(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 0210 arrived (the issuer debited) but the HSM failed on its MAC check: the
    request was on the wire, so it is reversed like an unanswered one, not dropped
    as "never sent"."""

    async def hsm_fails(_encoded: EncodedNetworkMessage) -> str | None:
        raise HsmTimeout("HSM did not answer before the deadline")

    await _purchase_whose_0210_check_is(stack, card, monkeypatch, hsm_fails)


async def test_a_network_94_gives_98_and_a_reversal(stack: Stack, card: TerminalCard) -> None:
    """The network calls the request a duplicate transmission: whatever it did with the
    first one is unknown here, so the switch answers 98 and reverses it."""
    assert stack.issuer is not None
    stack.issuer.rules.forced_by_pan[card.pan] = "94"
    try:
        terminal = await stack.terminal()
        before = await stack.balance(card)
        outcome = await terminal.transact(lambda m: m.purchase(card, 3500, pin=card.pin))
        await _answered_98_without_the_answers_fields(stack, outcome)
        await eventually(_saf_empty(stack))
        assert await stack.balance(card) == before
    finally:
        stack.issuer.rules.forced_by_pan.clear()


async def test_0420_reaches_the_issuer_after_it_recovers_across_a_switch_restart(
    stack: Stack, card: TerminalCard
) -> None:
    """The issuer debits, drops the answer and goes down; the switch answers 98,
    cannot deliver the 0420, is restarted; the new switch delivers it."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    task = asyncio.create_task(
        terminal.transact(lambda m: m.purchase(card, DROP_AMOUNT_MINOR, pin=card.pin))
    )
    await eventually(_equals(stack, card, before - DROP_AMOUNT_MINOR))
    await stack.stop_issuer()  # the ledger (with the debit) is flushed to its file
    outcome = await task
    assert outcome.response_code == "98"
    assert stack.store is not None and await stack.store.saf_depth() == 1
    await stack.stop_switch()
    await stack.start_issuer()  # same port, same ledger file
    assert await stack.balance(card) == before - DROP_AMOUNT_MINOR
    await stack.start_switch()
    await eventually(_saf_empty(stack), timeout_s=30)
    assert await stack.balance(card) == before


async def test_0420_after_restart_undoes_a_debit_exactly_once(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    assert stack.issuer is not None and stack.switch is not None
    saf = stack.switch.pipeline.services.saf if stack.switch.pipeline else None
    assert saf is not None
    await saf.close()  # the first switch never delivers: it stops before
    outcome = await terminal.transact(lambda m: m.purchase(card, DROP_AMOUNT_MINOR, pin=card.pin))
    assert outcome.response_code == "98" and await stack.balance(card) == before - DROP_AMOUNT_MINOR
    await stack.stop_switch()
    await stack.start_switch()
    await eventually(_saf_empty(stack), timeout_s=30)
    assert await stack.balance(card) == before


async def test_network_down_answers_91_at_once(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    await stack.stop_issuer()
    assert stack.switch is not None
    link = stack.switch.link
    await eventually(lambda: not link.signed_on)
    started = time.perf_counter()
    outcome = await terminal.transact(lambda m: m.purchase(card, 100, pin=card.pin))
    assert outcome.response_code == "91"
    assert time.perf_counter() - started < 0.5


def _equals(stack: Stack, card: TerminalCard, amount: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await stack.balance(card) == amount

    return check


def _saf_empty(stack: Stack):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        assert stack.store is not None
        return await stack.store.saf_depth() == 0

    return check
