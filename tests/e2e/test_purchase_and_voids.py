"""Balance, purchase and purchase void end to end, with the issuer's balance
checked after every step."""

from __future__ import annotations

import pytest

from terminals.cards import TerminalCard
from terminals.txn import TxnKind
from tests.e2e.conftest import MERCHANT_ID, Stack
from tests.e2e.tamper import send_raw, tampered


async def test_pin_purchase_debits_once_and_answers_the_issuers_fields(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    outcome = await terminal.transact(lambda m: m.purchase(card, 1234, pin=card.pin))
    assert outcome.approved and outcome.message is not None
    answer = outcome.message
    assert len(answer.text(38)) == 6 and len(answer.text(37)) == 12
    assert answer.text(63) == "CUP" and len(answer.text(44)) == 22 and 15 in answer
    assert await stack.balance(card) == before - 1234
    assert stack.store is not None
    entry = await stack.store.find_by_trace("10000001", "000001", outcome.trace)
    assert entry is not None and entry.state == "approved" and entry.auth_code == answer[38]
    assert entry.network_stan is not None and entry.network_f7 is not None
    assert entry.card_org == "CUP" and entry.card_class == "00" and entry.rrn == answer[37]


async def test_balance_inquiry_answers_f54_and_moves_no_money(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    outcome = await terminal.transact(lambda m: m.balance(card, pin=card.pin))
    assert outcome.approved and outcome.message is not None
    assert outcome.message.text(54).endswith(f"{before:012d}")
    assert await stack.balance(card) == before


async def test_void_restores_the_balance_once_and_a_second_void_answers_12(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    purchase = await terminal.transact(lambda m: m.purchase(card, 5000, pin=card.pin))
    assert purchase.approved
    void = await terminal.transact(lambda m: m.purchase_void(purchase.trace))
    assert void.approved and await stack.balance(card) == before
    again = await terminal.transact(lambda m: m.purchase_void(purchase.trace, allow_voided=True))
    assert again.response_code == "12" and await stack.balance(card) == before
    assert stack.store is not None
    original = await stack.store.find_by_trace("10000001", "000001", purchase.trace)
    assert original is not None and original.state == "voided"


async def test_void_with_another_amount_answers_64(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    purchase = await terminal.transact(lambda m: m.purchase(card, 5000, pin=card.pin))
    after_purchase = await stack.balance(card)
    frame = tampered(
        terminal.machine, terminal.machine.purchase_void(purchase.trace), {4: "000000004000"}
    )
    outcome = await terminal.exchange(frame)
    assert outcome.response_code == "64" and await stack.balance(card) == after_purchase


async def test_void_with_a_wrong_rrn_or_unknown_trace_answers_25(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    purchase = await terminal.transact(lambda m: m.purchase(card, 5000, pin=card.pin))
    after_purchase = await stack.balance(card)
    machine = terminal.machine
    wrong_rrn = tampered(machine, machine.purchase_void(purchase.trace), {37: "019999999999"})
    refused = await terminal.exchange(wrong_rrn)
    assert refused.response_code == "25" and refused.message is not None
    # Decided by the switch alone, the answer still carries 44 and 63 (terminal-link §3):
    # no issuer id, the switch's acquirer id, the card organisation from the BIN.
    acquirer_id = stack.settings().network.acquirer_id
    assert refused.message.text(44) == " " * 11 + acquirer_id.ljust(11)
    assert refused.message.text(63) == "CUP"
    unknown = machine.purchase_void(purchase.trace)
    f61 = "000001" + "999999" + machine.state.clock_date
    assert (await terminal.exchange(tampered(machine, unknown, {61: f61}))).response_code == "25"
    assert await stack.balance(card) == after_purchase


async def test_void_after_the_batch_closed_answers_25(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    purchase = await terminal.transact(lambda m: m.purchase(card, 700, pin=card.pin))
    assert stack.store is not None
    assert await stack.store.close_batch("10000001", "000001", "000002")
    terminal.machine.state.signed_in = False  # sign in again: learn batch 000002
    void = await terminal.transact(lambda m: m.purchase_void(purchase.trace))
    assert terminal.machine.state.batch == "000002"
    assert void.response_code == "25"


async def test_declined_purchase_is_journaled_declined_and_moves_no_money(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    outcome = await terminal.transact(lambda m: m.purchase(card, 99451, pin=card.pin))
    assert outcome.response_code == "51" and await stack.balance(card) == before
    assert stack.store is not None
    entry = await stack.store.find_by_trace("10000001", "000001", outcome.trace)
    assert entry is not None and entry.state == "declined"


async def test_wrong_pin_answers_55_and_the_third_75(stack: Stack) -> None:
    card = stack.cards[1]
    terminal = await stack.terminal()
    codes = [
        (await terminal.transact(lambda m: m.purchase(card, 100, pin="999999"))).response_code
        for _ in range(3)
    ]
    assert codes == ["55", "55", "75"]


async def test_undecipherable_pin_block_answers_99_and_asks_for_sign_in(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    assert stack.switch is not None
    machine = terminal.machine
    frame = tampered(machine, machine.purchase(card, 100, pin=card.pin), {52: b"\x13" * 8})
    machine.on_comms_error(after_send=False)  # the machine's copy is not sent
    answer = await send_raw(stack.switch.port, frame)
    assert answer.message[39] == "99" and answer.header[5] == "3"
    assert answer.message.mti == "0210" and answer.message[42] == MERCHANT_ID


async def test_reversal_kind_is_recorded_for_an_unknown_original(stack: Stack) -> None:
    terminal = await stack.terminal()
    machine = terminal.machine
    card = stack.cards[0]
    machine.purchase(card, 321, pin=card.pin)  # built, never sent
    machine.on_timeout()
    outcome = await terminal.exchange(machine.reversal())
    assert outcome.kind is TxnKind.REVERSAL and outcome.response_code == "00"
    assert stack.store is not None
    entry = await stack.store.find_by_trace("10000001", "000001", outcome.trace, "reversal")
    assert entry is not None and entry.original_id is None and entry.response_code == "00"


async def test_a_purchase_hashes_its_pan_once(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The risk step, the journal entry and the lookups share one keyed hash per
    request (``TxnContext.pan_hash``), and it is the journal's."""
    from posp.pipeline.context import Services

    hashed: list[tuple[str, str]] = []
    keyed = Services.pan_hash

    def counted(self: Services, pan: str) -> str:
        hashed.append((pan, keyed(self, pan)))
        return hashed[-1][1]

    terminal = await stack.terminal()
    monkeypatch.setattr(Services, "pan_hash", counted)
    outcome = await terminal.transact(lambda m: m.purchase(card, 1234, pin=card.pin))
    assert outcome.approved
    assert [pan for pan, _ in hashed] == [card.pan]
    assert stack.store is not None
    entry = await stack.store.find_by_trace("10000001", "000001", outcome.trace)
    assert entry is not None and entry.pan_hash == hashed[0][1]
