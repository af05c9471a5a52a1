"""A void or refund reserves its amount in the original while it is in flight,
and gives it back exactly once, whoever ends it (``posp.pipeline.originals``).

Over real sockets with the issuer held mid-decision: a refund or a second void
racing a void in flight is refused before it reaches the network; a void cut
off by a crash, or whose release the store failed, is released by the in-doubt
sweeper; a void its terminal reverses (in flight or answered), or whose
approval the switch cannot deliver, leaves the purchase refundable; an approved
void whose original could not be voided keeps it until the void is undone.
Each checks the card's balance at the issuer after the steps; one races voids
and refunds of a dozen purchases without holding anything (it fails on the
code before: a purchase voided and refunded)."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import random
from typing import Any

import pytest

from posp.errors import StoreUnavailable
from posp.store.api import JournalEntry
from terminals.cards import TerminalCard
from terminals.machine import TerminalMachine
from terminals.outcome import Outcome
from terminals.session import TerminalSession
from tests.e2e.conftest import Stack, eventually
from tests.e2e.tamper import send_raw
from tests.e2e.test_money_under_faults import (
    BATCH,
    TERMINAL,
    balance_is,
    crash_switch,
    fail_answer_macs,
    gate_issuer,
    issuer_0420s,
    saf_settled,
    store_down,
)
from tests.e2e.test_reversals import answered_but_lost


async def _purchase(terminal: TerminalSession, card: TerminalCard, amount: int) -> tuple[str, ...]:
    """An approved PIN purchase: its trace, RRN and date (MMDD)."""
    outcome = await terminal.transact(lambda m: m.purchase(card, amount, pin=card.pin))
    assert outcome.approved and outcome.message is not None
    return outcome.trace, outcome.message.text(37), outcome.message.text(13)


async def _entry(stack: Stack, trace: str) -> JournalEntry:
    assert stack.store is not None
    entry = await stack.store.find_by_trace(TERMINAL, BATCH, trace)
    assert entry is not None
    return entry


async def _declined_voids(
    stack: Stack, terminal: TerminalSession, card: TerminalCard, *traces: str
) -> None:
    """Void each purchase ``traces`` names, the issuer declining every one (05)."""
    assert stack.issuer is not None
    stack.issuer.rules.forced_by_pan[card.pan] = "05"
    for trace in traces:
        void = await terminal.transact(functools.partial(_void_frame, trace=trace))
        assert void.response_code == "05"
    stack.issuer.rules.forced_by_pan.clear()


async def _refund(
    terminal: TerminalSession, card: TerminalCard, rrn: str, date: str, amount: int
) -> Outcome:
    """A refund of ``amount`` of the purchase with RRN ``rrn`` on ``date`` (MMDD)."""
    return await terminal.transact(lambda m: m.refund(card, rrn, date, amount))


def _void_frame(machine: TerminalMachine, trace: str) -> bytes:
    return machine.purchase_void(trace)


def _releases_fail(monkeypatch: pytest.MonkeyPatch, store: Any) -> None:
    """The store fails every reservation release (until ``monkeypatch.undo()``)."""

    async def store_down(*_args: Any, **_kwargs: Any) -> bool:
        raise StoreUnavailable("release_reservation: database unavailable")

    monkeypatch.setattr(store, "release_reservation", store_down)


def _detached(terminal: TerminalSession, frame: bytes) -> bytes:
    """``frame`` sent outside the session (the test reads its answer itself): the
    machine forgets it, so it can build the next request while this one waits."""
    terminal.machine.on_comms_error(after_send=False)
    return frame


async def _void_held_at_the_issuer(
    stack: Stack, terminal: TerminalSession, trace: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Task[Any], asyncio.Event]:
    """A void of ``trace`` that has reached the issuer, which holds it undecided."""
    received, release = gate_issuer(stack, monkeypatch)
    assert stack.switch is not None
    frame = _detached(terminal, terminal.machine.purchase_void(trace))
    voiding = asyncio.create_task(send_raw(stack.switch.port, frame, timeout_s=30))
    await received.wait()
    return voiding, release


async def test_a_refund_while_a_void_is_in_flight_answers_64_and_moves_no_money(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the refund was sent while the void awaited its answer, and the
    cardholder got 1,000 back from the void plus 400 from the refund."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, rrn, date = await _purchase(terminal, card, 1000)
    assert await stack.balance(card) == before - 1000
    voiding, release = await _void_held_at_the_issuer(stack, terminal, trace, monkeypatch)
    assert (await _entry(stack, trace)).refunded_minor == 1000  # reserved by the void
    assert stack.switch is not None
    refund = _detached(terminal, terminal.machine.refund(card, rrn, date, 400))
    answer = await send_raw(stack.switch.port, refund)
    assert answer.message[39] == "64"
    release.set()
    assert (await voiding).message[39] == "00"
    assert await stack.balance(card) == before  # the void alone gave the money back
    original = await _entry(stack, trace)
    assert original.state == "voided" and original.refunded_minor == 0
    late = _detached(terminal, terminal.machine.refund(card, rrn, date, 400))
    assert (await send_raw(stack.switch.port, late)).message[39] == "12"
    assert await stack.balance(card) == before


async def test_a_second_void_while_the_first_is_in_flight_answers_12(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, _rrn, _date = await _purchase(terminal, card, 700)
    voiding, release = await _void_held_at_the_issuer(stack, terminal, trace, monkeypatch)
    assert stack.switch is not None
    again = _detached(terminal, terminal.machine.purchase_void(trace))
    assert (await send_raw(stack.switch.port, again)).message[39] == "12"
    release.set()
    assert (await voiding).message[39] == "00"
    assert await stack.balance(card) == before
    assert (await _entry(stack, trace)).state == "voided"


async def test_a_declined_void_gives_its_reservation_back(stack: Stack, card: TerminalCard) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, rrn, date = await _purchase(terminal, card, 900)
    await _declined_voids(stack, terminal, card, trace)
    assert (await _entry(stack, trace)).refunded_minor == 0
    refund = await _refund(terminal, card, rrn, date, 900)
    assert refund.approved and await stack.balance(card) == before


async def test_a_release_the_store_failed_is_done_by_the_sweeper(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The void is declined but the store fails as its reservation is given back:
    the answer still leaves, and the next sweep past the deadline releases it."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, rrn, date = await _purchase(terminal, card, 600)
    assert stack.switch is not None and stack.switch.pipeline is not None
    assert stack.issuer is not None and stack.switch.recovery is not None
    _releases_fail(monkeypatch, stack.switch.pipeline.services.store)
    await _declined_voids(stack, terminal, card, trace)
    monkeypatch.undo()
    assert (await _entry(stack, trace)).refunded_minor == 600  # stranded
    recovery = stack.switch.recovery
    assert (await recovery.sweep()).reservations_released == 0  # not before the deadline
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=recovery.in_doubt_after_s + 1)
    assert (await recovery.sweep(later)).reservations_released == 1
    assert (await recovery.sweep(later)).reservations_released == 0  # once
    assert (await _entry(stack, trace)).refunded_minor == 0
    refund = await _refund(terminal, card, rrn, date, 600)
    assert refund.approved and await stack.balance(card) == before


async def test_a_reservation_whose_release_keeps_failing_does_not_hide_the_others(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep pages past a row it cannot release (logged), so one bad row —
    here an original whose count lost the share behind the store's back — never
    keeps the reservations after it stranded."""
    terminal = await stack.terminal()
    assert stack.store is not None and stack.switch is not None
    assert stack.switch.recovery is not None and stack.issuer is not None
    first, _rrn, _date = await _purchase(terminal, card, 300)
    second, rrn, date = await _purchase(terminal, card, 400)
    store = stack.switch.pipeline.services.store if stack.switch.pipeline else stack.store
    _releases_fail(monkeypatch, store)
    await _declined_voids(stack, terminal, card, first, second)
    monkeypatch.undo()
    bad = await _entry(stack, first)
    assert bad.id is not None and await stack.store.add_refunded(bad.id, -300, 300)
    monkeypatch.setattr("posp.pipeline.recovery.BATCH", 1)
    recovery = stack.switch.recovery
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=recovery.in_doubt_after_s + 1)
    assert (await recovery.sweep(later)).reservations_released == 1
    assert (await _entry(stack, second)).refunded_minor == 0
    refund = await _refund(terminal, card, rrn, date, 400)
    assert refund.approved


async def _void_cut_off_by_a_crash(
    stack: Stack,
    terminal: TerminalSession,
    card: TerminalCard,
    amount: int,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, ...]:
    """A purchase of ``amount``, then its void reaches the issuer and the switch
    dies before the answer (the issuer voided: the balance is back); the
    purchase's trace, RRN and date.  The switch is left stopped."""
    before = await stack.balance(card)
    found = await _purchase(terminal, card, amount)
    voiding, release = await _void_held_at_the_issuer(stack, terminal, found[0], monkeypatch)
    await crash_switch(stack)
    release.set()
    await eventually(balance_is(stack, card, before))  # the issuer voided; answer lost
    with pytest.raises((OSError, asyncio.IncompleteReadError)):
        await voiding
    monkeypatch.undo()
    return found


async def test_a_void_cut_off_by_a_crash_is_released_by_the_sweeper(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The void reached the issuer and the switch died: the sweeper reverses the
    void upstream and gives its reservation back, so the purchase, which stands,
    can still be refunded (before the entry carried it, it stayed blocked)."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, rrn, date = await _void_cut_off_by_a_crash(stack, terminal, card, 1200, monkeypatch)
    switch = await stack.start_switch()
    assert switch.recovery is not None
    assert (await _entry(stack, trace)).refunded_minor == 1200  # still reserved
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=switch.recovery.in_doubt_after_s + 1)
    assert (await switch.recovery.sweep(later)).timed_out == 1
    await saf_settled(stack)
    assert await stack.balance(card) == before - 1200  # the void undone: the sale stands
    assert issuer_0420s(stack) == 1
    original = await _entry(stack, trace)
    assert original.state == "approved" and original.refunded_minor == 0
    assert (await switch.recovery.sweep(later)).timed_out == 0  # released once
    session = stack.session(terminal.machine)
    refund = await _refund(session, card, rrn, date, 1200)
    assert refund.approved and await stack.balance(card) == before
    assert (await _entry(stack, trace)).refunded_minor == 1200


async def test_a_void_cut_off_by_a_crash_gives_its_reservation_back_if_its_hold_fails(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, with the store failing the void's risk-hold release during the
    sweep: the reservation is given back all the same, in the same step (not left
    for the stranded-reservation read), and the pass counts the entry timed out and
    unresolved, once each."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, _rrn, _date = await _void_cut_off_by_a_crash(stack, terminal, card, 1300, monkeypatch)
    switch = await stack.start_switch()
    assert switch.recovery is not None
    await switch.recovery.close()  # only this test's passes
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=switch.recovery.in_doubt_after_s + 1)

    with monkeypatch.context() as patched:
        patched.setattr("posp.pipeline.recovery.release_hold", store_down)
        swept = await switch.recovery.sweep(later)
    assert (swept.timed_out, swept.unresolved, swept.reservations_released) == (1, 1, 0)
    assert (await _entry(stack, trace)).refunded_minor == 0  # given back with the 0420
    await saf_settled(stack)
    assert await stack.balance(card) == before - 1300  # the void undone: the sale stands
    assert issuer_0420s(stack) == 1


async def test_a_void_reversed_by_its_terminal_leaves_the_purchase_refundable(
    stack: Stack, card: TerminalCard
) -> None:
    """The void's reservation went back when it was recorded; its 0400 gives the
    purchase back its state, and the purchase can be refunded in full."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, rrn, date = await _purchase(terminal, card, 1500)
    await answered_but_lost(stack, terminal, terminal.machine.purchase_void(trace))
    assert await stack.balance(card) == before
    reversal = terminal.machine.reversal()
    assert (await terminal.exchange(reversal)).response_code == "00"
    await saf_settled(stack)
    assert await stack.balance(card) == before - 1500
    original = await _entry(stack, trace)
    assert original.state == "approved" and original.refunded_minor == 0
    assert stack.switch is not None
    assert (await send_raw(stack.switch.port, reversal)).message[39] == "00"  # a repeat
    assert (await _entry(stack, trace)).refunded_minor == 0
    refund = await _refund(terminal, card, rrn, date, 1500)
    assert refund.approved and await stack.balance(card) == before


async def test_an_undelivered_void_approval_leaves_the_purchase_refundable(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, rrn, date = await _purchase(terminal, card, 2000)
    fail_answer_macs(stack, monkeypatch)
    void = await terminal.transact(lambda m: m.purchase_void(trace))
    assert void.response_code == "96"
    monkeypatch.undo()
    await saf_settled(stack)
    assert await stack.balance(card) == before - 2000  # the switch reversed the void
    original = await _entry(stack, trace)
    assert original.state == "approved" and original.refunded_minor == 0
    refund = await _refund(terminal, card, rrn, date, 2000)
    assert refund.approved and await stack.balance(card) == before


async def test_a_0400_of_a_void_in_flight_gives_its_reservation_back_once(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal gives up on the void while the issuer still holds it: its 0400
    reverses the pending void and gives the reservation back; the void's late
    approval is then not counted and gives nothing back a second time."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, rrn, date = await _purchase(terminal, card, 1100)
    received, release = gate_issuer(stack, monkeypatch)
    assert stack.switch is not None
    frame = terminal.machine.purchase_void(trace)
    voiding = asyncio.create_task(send_raw(stack.switch.port, frame, timeout_s=30))
    await received.wait()
    terminal.machine.on_timeout()  # the terminal's reversal of the void is due
    reversal = await terminal.exchange(terminal.machine.reversal())
    assert reversal.response_code == "00"
    assert (await _entry(stack, trace)).refunded_minor == 0  # given back by the 0400
    release.set()
    await voiding  # approved upstream, but the entry was reversed: not counted
    await saf_settled(stack)  # the void's 0420 undoes it at the issuer
    assert await stack.balance(card) == before - 1100  # the sale stands
    original = await _entry(stack, trace)
    assert original.state == "approved" and original.refunded_minor == 0  # not negative
    monkeypatch.undo()
    refund = await _refund(terminal, card, rrn, date, 1100)
    assert refund.approved and await stack.balance(card) == before


def _original_never_voided(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, failure: Exception | None
) -> None:
    """The approved void's change of its original to voided fails: it changes
    nothing (``failure`` None) or the store raises ``failure``."""
    assert stack.switch is not None and stack.switch.pipeline is not None
    store = stack.switch.pipeline.services.store
    transition = store.transition

    async def refused(entry_id: int, from_states: tuple[str, ...], to_state: str) -> bool:
        if to_state != "voided":
            return await transition(entry_id, from_states, to_state)
        if failure is not None:
            raise failure
        return False

    monkeypatch.setattr(store, "transition", refused)


async def test_an_approved_void_whose_original_was_not_voided_keeps_its_reservation(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issuer voided, but the journal's purchase is still approved: a refund of
    it must not be approved on top of the void."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, rrn, date = await _purchase(terminal, card, 1300)
    _original_never_voided(stack, monkeypatch, None)
    assert (await terminal.transact(lambda m: m.purchase_void(trace))).approved
    monkeypatch.undo()
    assert await stack.balance(card) == before
    original = await _entry(stack, trace)
    assert original.state == "approved" and original.refunded_minor == 1300
    refund = await _refund(terminal, card, rrn, date, 1300)
    assert refund.response_code == "64" and await stack.balance(card) == before


async def test_a_void_whose_original_change_fails_is_undone_and_gives_it_back(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails as the approved void marks its original: the switch undoes
    the void (0420) and only then gives the reservation back."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    trace, rrn, date = await _purchase(terminal, card, 1400)
    _original_never_voided(stack, monkeypatch, StoreUnavailable("transition: database down"))
    void = await terminal.transact(lambda m: m.purchase_void(trace))
    assert not void.approved
    monkeypatch.undo()
    await saf_settled(stack)
    assert await stack.balance(card) == before - 1400  # the void undone upstream
    original = await _entry(stack, trace)
    assert original.state == "approved" and original.refunded_minor == 0
    refund = await _refund(terminal, card, rrn, date, 1400)
    assert refund.approved and await stack.balance(card) == before


async def test_racing_voids_and_refunds_keep_the_journal_and_the_issuer_in_agreement(
    stack: Stack, card: TerminalCard
) -> None:
    """Purchases, then for each at once over separate connections a void, two
    refunds of random amounts and a repeated void: whatever wins, a purchase is
    never both voided and refunded, its refunded count equals its approved
    refunds (nothing left reserved), and the issuer's balance equals what the
    journal says happened."""
    rng = random.Random(20261203)
    terminal = await stack.terminal()
    assert stack.switch is not None and stack.store is not None
    before = await stack.balance(card)
    purchases = [await _purchase(terminal, card, rng.randrange(200, 2000)) for _ in range(12)]
    frames: list[tuple[str, str, bytes]] = []  # (original trace, kind, frame)
    for trace, rrn, date in purchases:
        amount = (await _entry(stack, trace)).amount_minor or 0
        frames.append((trace, "void", _detached(terminal, terminal.machine.purchase_void(trace))))
        for _ in range(2):
            part = rng.randrange(1, amount + 1)
            refund = terminal.machine.refund(card, rrn, date, part)
            frames.append((trace, "refund", _detached(terminal, refund)))
        again = terminal.machine.purchase_void(trace, allow_voided=True)
        frames.append((trace, "void", _detached(terminal, again)))
    rng.shuffle(frames)
    answers = await asyncio.gather(*(send_raw(stack.switch.port, f) for _, _, f in frames))
    codes = collections.Counter(a.message[39] for a in answers)
    assert set(codes) == {"00", "12", "64"}  # winners and both kinds of refusal
    expected = before
    for trace, _rrn, _date in purchases:
        original = await _entry(stack, trace)
        assert original.id is not None and original.amount_minor is not None
        refunds = [
            int(a.message[4])  # type: ignore[arg-type]
            for (t, kind, _), a in zip(frames, answers, strict=True)
            if t == trace and kind == "refund" and a.message[39] == "00"
        ]
        voids = [
            a
            for (t, kind, _), a in zip(frames, answers, strict=True)
            if t == trace and kind == "void" and a.message[39] == "00"
        ]
        assert len(voids) <= 1 and not (voids and refunds)
        assert original.refunded_minor == sum(refunds) <= original.amount_minor
        assert (original.state == "voided") == bool(voids)
        expected -= 0 if voids else original.amount_minor - sum(refunds)
    assert await stack.balance(card) == expected
