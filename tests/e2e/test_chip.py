"""Chip cards end to end (terminal-link §8): the simulated card's ARQC verified by the
issuer through its HSM, the ARPC verified by the card, fallback policy at the switch;
the issuer's balance checked after each step."""

from __future__ import annotations

from pathlib import Path

import pytest

from posp.errors import StoreUnavailable
from posp.iso8583.tlv import build_f55, decode_f55
from posp.pipeline.chipadvice import tc_report
from posp.store.api import SafItem
from terminals.cards import TerminalCard
from terminals.chipwallet import chip_for
from terminals.machine import TerminalMachine
from terminals.requests import CONTACTLESS, FALLBACK, IC, SWIPED_CHIP
from tests.e2e.conftest import Stack, eventually
from tests.e2e.tamper import tampered


async def test_chip_purchase_is_approved_with_an_arpc_the_card_accepts(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    outcome = await terminal.transact(lambda m: m.purchase(card, 1500, card.pin, IC))
    assert outcome.approved and outcome.detail == "TC", outcome
    assert outcome.message is not None and isinstance(outcome.message.get(55), bytes)
    assert outcome.trace in terminal.machine.state.tcs
    assert await stack.balance(card) == before - 1500


async def test_a_bad_arqc_is_declined_05_and_moves_no_money(
    stack: Stack, card: TerminalCard
) -> None:
    """A card whose IMK-AC is not the issuer's makes ARQCs the HSM refuses (KQ 01)."""
    terminal = await stack.terminal()
    chip = chip_for(card.pan)
    assert chip is not None
    before = await stack.balance(card)
    genuine, chip.imk_ac = chip.imk_ac, bytes(16)
    try:
        outcome = await terminal.transact(lambda m: m.purchase(card, 1500, card.pin, IC))
    finally:
        chip.imk_ac = genuine
    assert outcome.response_code == "05" and not outcome.approved
    assert outcome.message is not None and 55 not in outcome.message
    assert await stack.balance(card) == before


async def test_an_arpc_failure_on_the_card_reverses_06_and_restores_the_balance_once(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    terminal.machine.chip_faults["arpc"] = True
    outcome = await terminal.transact(lambda m: m.purchase(card, 2500, card.pin, IC))
    assert outcome.response_code == "00" and not outcome.approved and outcome.reversal_queued
    assert terminal.machine.state.pending_reversal is not None
    assert terminal.machine.state.pending_reversal.reason == "06"
    assert await terminal.prepare() is None  # the 0400 went out and was answered
    await eventually(lambda: _balance_is(stack, card, before))
    assert outcome.trace not in terminal.machine.state.journal
    again = await terminal.transact(lambda m: m.purchase(card, 100, card.pin, IC))
    assert again.approved and await stack.balance(card) == before - 100


async def _balance_is(stack: Stack, card: TerminalCard, amount: int) -> bool:
    return await stack.balance(card) == amount


async def test_a_replayed_atc_is_declined(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    chip = chip_for(card.pan)
    assert chip is not None
    first = await terminal.transact(lambda m: m.purchase(card, 700, card.pin, IC))
    assert first.approved
    after_first = await stack.balance(card)
    chip.atc -= 1  # the next first GENERATE AC repeats the ATC just used
    replay = await terminal.transact(lambda m: m.purchase(card, 700, card.pin, IC))
    assert replay.response_code == "05" and await stack.balance(card) == after_first


async def test_a_chip_read_lacking_a_mandatory_tag_answers_30(
    stack: Stack, card: TerminalCard
) -> None:
    """The switch checks §8's tag list itself; the issuer never sees the request."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    machine = terminal.machine

    def without_9f1e(m: TerminalMachine) -> bytes:
        frame = m.purchase(card, 900, card.pin, IC)
        f55 = decode_f55(bytes(m.in_flight.message[55]))  # type: ignore[union-attr,arg-type]
        kept = build_f55((t.tag, t.value) for t in f55 if t.tag != "9F1E")
        return tampered(m, frame, {55: kept})

    outcome = await terminal.transact(without_9f1e)
    assert outcome.response_code == "30" and await stack.balance(card) == before
    assert machine.state.pending_reversal is None


async def test_a_swiped_chip_card_without_fallback_answers_45(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    outcome = await terminal.transact(lambda m: m.purchase(card, 800, card.pin, SWIPED_CHIP))
    assert outcome.response_code == "45" and await stack.balance(card) == before


async def test_a_fallback_swipe_is_approved_and_counted(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    outcome = await terminal.transact(lambda m: m.purchase(card, 800, card.pin, FALLBACK))
    assert outcome.approved and await stack.balance(card) == before - 800
    assert stack.switch is not None
    metrics = stack.switch.metrics
    assert metrics.fallbacks_by_terminal == {"10000001": 1}
    assert metrics.chip_fallbacks.labels("allowed")._value.get() == 1
    assert stack.store is not None
    entry = await stack.store.find_by_trace("10000001", "000001", outcome.trace)
    assert entry is not None and entry.entry_mode == "80"
    assert (await tc_report(stack.store, "10000001", "000001")).fallbacks == 1


async def test_contactless_needs_no_pin_under_the_limit_and_a_pin_above(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal(contactless_no_pin_limit_minor=5000)
    before = await stack.balance(card)
    small = await terminal.transact(lambda m: m.purchase(card, 4000, card.pin, CONTACTLESS))
    assert small.approved
    large = await terminal.transact(lambda m: m.purchase(card, 6000, card.pin, CONTACTLESS))
    assert large.approved
    assert await stack.balance(card) == before - 10000


async def test_script_results_go_to_the_switch_and_on_to_the_network_once(
    tmp_path: Path,
) -> None:
    """A card flagged for scripts gets a 72 script; its DF31 advice (0620) is answered
    00, journaled against the original and delivered to the network (0630)."""
    stack = Stack.create(tmp_path)
    card = stack.cards[0]
    try:
        await stack.start_issuer(chip_script_pans=[card.pan])
        await stack.start_switch()
        terminal = await stack.terminal()
        before = await stack.balance(card)
        outcome = await terminal.transact(lambda m: m.purchase(card, 1200, card.pin, IC))
        assert outcome.approved and outcome.trace in terminal.machine.state.script_advices
        assert await terminal.prepare() is None  # the advice went out and was answered
        assert not terminal.machine.state.script_advices
        assert stack.store is not None
        advice = await stack.store.find_by_trace("10000001", "000001", outcome.trace, "advice")
        original = await stack.store.find_by_trace("10000001", "000001", outcome.trace)
        assert advice is not None and original is not None and advice.id is not None
        assert advice.txn_type == "script_advice" and advice.original_id == original.id
        assert advice.response_code == "00"

        async def delivered() -> bool:
            assert stack.store is not None and advice.id is not None
            item = await stack.store.get_saf(advice.id)
            return item is not None and item.delivered_at is not None

        await eventually(delivered)
        assert await stack.balance(card) == before - 1200
        # The terminal lost the 0630 and sends the advice again: same row, 00, no resend.
        terminal.machine.state.script_advices[outcome.trace] = b"\xdf\x31\x05\x20\x00\x00\x00\x01"
        assert await terminal.prepare() is None
        again = await stack.store.find_by_trace("10000001", "000001", outcome.trace, "advice")
        assert again is not None and again.id == advice.id
        assert await stack.store.saf_depth() == 0
    finally:
        await stack.close()


async def test_tc_upload_after_settlement_is_complete_and_a_missing_tc_is_reported(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    for amount in (300, 400):
        outcome = await terminal.transact(lambda m, a=amount: m.purchase(card, a, card.pin, IC))
        assert outcome.approved
    settled = await terminal.settle()
    assert settled.approved and not terminal.machine.state.tcs
    assert stack.store is not None
    first = await tc_report(stack.store, "10000001", "000001")
    assert first.chip_approved == 2 and first.tcs == 2 and first.complete
    kept = await terminal.transact(lambda m: m.purchase(card, 500, card.pin, IC))
    lost = await terminal.transact(lambda m: m.purchase(card, 600, card.pin, IC))
    assert kept.approved and lost.approved
    del terminal.machine.state.tcs[lost.trace]  # the terminal lost this TC
    assert (await terminal.settle()).approved
    second = await tc_report(stack.store, "10000001", "000002")
    assert second.missing == (lost.trace,) and second.unexpected == ()
    assert await stack.balance(card) == before - 1800


async def test_a_script_advice_cut_off_before_it_was_queued_is_queued_by_its_repeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 0620 was journaled but its network advice never queued (store trouble, or
    the switch died there): the terminal's repeat queues it, once."""
    stack = Stack.create(tmp_path)
    card = stack.cards[0]
    try:
        await stack.start_issuer(chip_script_pans=[card.pan])
        await stack.start_switch()
        terminal = await stack.terminal()
        outcome = await terminal.transact(lambda m: m.purchase(card, 1300, card.pin, IC))
        assert outcome.approved and outcome.trace in terminal.machine.state.script_advices
        assert stack.switch is not None and stack.switch.pipeline is not None
        store = stack.switch.pipeline.services.store
        enqueue = store.enqueue_saf

        async def down_once(item: SafItem) -> int:
            monkeypatch.setattr(store, "enqueue_saf", enqueue)
            raise StoreUnavailable("enqueue_saf: database unavailable")

        monkeypatch.setattr(store, "enqueue_saf", down_once)
        await terminal.prepare()  # the first 0620: journaled, not queued, answered 96
        assert outcome.trace in terminal.machine.state.script_advices
        assert await terminal.prepare() is None  # the repeat
        assert stack.store is not None
        advice = await stack.store.find_by_trace("10000001", "000001", outcome.trace, "advice")
        assert advice is not None and advice.id is not None

        async def delivered() -> bool:
            assert stack.store is not None and advice.id is not None
            item = await stack.store.get_saf(advice.id)
            return item is not None and item.delivered_at is not None

        await eventually(delivered)
    finally:
        await stack.close()
