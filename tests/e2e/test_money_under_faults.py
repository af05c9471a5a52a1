"""Money is never lost on a crash (issue 12), one purchase at a time over real
sockets: a switch that dies with a request in flight, an approval whose answer
cannot be MACed or delivered, a 0400 that arrives while the HSM is down, and a
purchase reversed by the switch (98) and then by the terminal.  Each ends with
the card's balance at the issuer and the number of 0420s the issuer received."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from issuer_sim.authorizer import Authorizer
from issuer_sim.rules import DROP_AMOUNT_MINOR
from posp.errors import HsmUnavailable, StoreUnavailable
from posp.hsm.api import KEY_TAK
from posp.iso8583 import Message
from posp.store.api import OpenEntries
from posp.store.sql_store import SqlStore
from posp.switch import Switch
from terminals.cards import TerminalCard
from terminals.session import TerminalSession
from tests.e2e.conftest import Stack, eventually
from tests.e2e.tamper import send_raw
from tests.e2e.test_reversals import answered_but_lost

TERMINAL = "10000001"
BATCH = "000001"


def switch_hsm(stack: Stack) -> Any:
    """The HSM client the switch's steps call (patch faults in here)."""
    assert stack.switch is not None and stack.switch.pipeline is not None
    return stack.switch.pipeline.services.hsm


def fail_answer_macs(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch's HSM fails every MAC under a TAK (the answers'), until undone."""
    hsm = switch_hsm(stack)
    generate_mac = hsm.generate_mac

    async def fail_on_tak(key_type: str, *args: Any, **kwargs: Any) -> Any:
        if key_type == KEY_TAK:
            raise HsmUnavailable("HSM connection lost")
        return await generate_mac(key_type, *args, **kwargs)

    monkeypatch.setattr(hsm, "generate_mac", fail_on_tak)


def issuer_0420s(stack: Stack) -> int:
    """How many 0420s the issuer has answered."""
    assert stack.issuer is not None
    total = 0.0
    for metric in stack.issuer.metrics.requests.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("mti") == "0420":
                total += sample.value
    return int(total)


def sample(switch: Switch, name: str, **labels: str) -> float | None:
    """One sample of the switch's metrics, as a scrape would show it."""
    return switch.registry.get_sample_value(name, labels)


async def store_down(*_args: Any, **_kwargs: Any) -> Any:
    """A store call that fails as on a lost database connection (patch it in)."""
    raise StoreUnavailable("database connection lost")


def gate_issuer(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, asyncio.Event]:
    """The issuer holds every authorization until ``release`` is set; ``received``
    is set when one has arrived (the request is on the network, not yet decided)."""
    assert stack.issuer is not None
    authorize = Authorizer.authorize
    received, release = asyncio.Event(), asyncio.Event()

    async def gated(self: Authorizer, request: Message) -> Any:
        received.set()
        await release.wait()
        return await authorize(self, request)

    monkeypatch.setattr(Authorizer, "authorize", gated)
    return received, release


async def crash_switch(stack: Stack) -> None:
    """The switch dies with its requests in flight: their handlers end where they
    are (nothing after the cancellation point runs), then the process is gone."""
    assert stack.switch is not None and stack.switch.server is not None
    for task in list(stack.switch.server.tasks):
        task.cancel()
    await asyncio.gather(*stack.switch.server.tasks, return_exceptions=True)
    await stack.stop_switch()


async def saf_settled(stack: Stack) -> None:
    async def empty() -> bool:
        assert stack.store is not None
        return await stack.store.saf_depth() == 0

    await eventually(empty, timeout_s=8)


def balance_is(stack: Stack, card: TerminalCard, amount: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await stack.balance(card) == amount

    return check


async def purchase_in_flight_when_the_switch_dies(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch, amount: int
) -> TerminalSession:
    """A PIN purchase reaches the issuer, the switch dies, the issuer then debits."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    received, release = gate_issuer(stack, monkeypatch)
    assert stack.switch is not None
    frame = terminal.machine.purchase(card, amount, pin=card.pin)
    sending = asyncio.create_task(send_raw(stack.switch.port, frame, timeout_s=30))
    await received.wait()
    await crash_switch(stack)
    release.set()
    await eventually(balance_is(stack, card, before - amount))  # debited, answer lost
    with pytest.raises((OSError, asyncio.IncompleteReadError)):
        await sending
    terminal.machine.on_timeout()  # the terminal saw no answer: its reversal is due
    return terminal


async def hold_released(stack: Stack, entry_id: int | None) -> bool:
    """The entry had a risk hold and it was given back (its record says so)."""
    assert isinstance(stack.store, SqlStore) and entry_id is not None
    found = await stack.store._read(
        "test_hold", "SELECT hold, released_at FROM risk_records WHERE entry_id = ?", [entry_id]
    )
    return bool(found) and found[0]["hold"] is not None and found[0]["released_at"] is not None


async def test_switch_killed_mid_purchase_then_the_terminals_0400_restores_the_balance(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario 1: the entry a dead switch left pending (with the network ids it
    journaled before sending) gets a 0420 when the terminal's 0400 comes."""
    before = await stack.balance(card)
    terminal = await purchase_in_flight_when_the_switch_dies(stack, card, monkeypatch, 2500)
    await stack.start_switch()
    session = stack.session(terminal.machine)
    outcome = await session.exchange(terminal.machine.reversal())
    assert outcome.response_code == "00"
    await saf_settled(stack)
    assert await stack.balance(card) == before
    assert stack.store is not None
    original = await stack.store.find_by_trace(TERMINAL, BATCH, outcome.trace)
    assert original is not None and original.state == "reversed"
    assert original.network_stan is not None and original.network_f7 is not None
    assert issuer_0420s(stack) == 1


async def test_switch_killed_mid_purchase_is_reversed_by_the_sweeper_without_a_0400(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An orphaned pending entry past its deadline is timed out with a 0420 built
    from the journal, even if the terminal never sends its 0400."""
    before = await stack.balance(card)
    terminal = await purchase_in_flight_when_the_switch_dies(stack, card, monkeypatch, 3100)
    switch = await stack.start_switch()
    assert switch.recovery is not None
    await switch.recovery.close()  # only this test's passes set the gauges read below
    now = await switch.recovery.sweep()
    assert now.timed_out == 0  # still within its deadline: not in doubt yet
    assert now.in_doubt == 0 and now.open_entries == OpenEntries(1, 1)  # not yet in doubt
    assert sample(switch, "posp_journal_pending_entries") == 1
    assert sample(switch, "posp_journal_open_rows") == 1
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=switch.recovery.in_doubt_after_s + 1)
    swept = await switch.recovery.sweep(later)
    assert (swept.timed_out, swept.in_doubt, swept.unresolved) == (1, 1, 0)
    assert swept.open_entries is not None and swept.open_entries.pending == 0
    assert sample(switch, "posp_recovery_resolved_total", outcome="timed_out") == 1
    assert sample(switch, "posp_recovery_in_doubt_entries") == 1
    assert sample(switch, "posp_journal_pending_entries") == 0
    assert (sample(switch, "posp_recovery_sweeps_total", result="ok") or 0) >= 2
    assert sample(switch, "posp_recovery_sweeps_total", result="failed") == 0
    await saf_settled(stack)
    assert await stack.balance(card) == before
    assert stack.store is not None
    trace = f"{terminal.machine.state.last_trace:06d}"
    original = await stack.store.find_by_trace(TERMINAL, BATCH, trace)
    assert original is not None and original.state == "timed_out"
    assert await hold_released(stack, original.id)  # the risk hold kept before sending
    assert (await switch.recovery.sweep(later)).timed_out == 0  # resolved once
    assert sample(switch, "posp_recovery_in_doubt_entries") == 0
    assert sample(switch, "posp_recovery_resolved_total", outcome="timed_out") == 1
    assert issuer_0420s(stack) == 1


async def test_a_failing_sweep_and_an_entry_it_cannot_resolve_show_in_the_metrics(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pass by pass, with the store failing one statement after another: the
    0420's queueing (the entry stays pending: unresolved, still in doubt); the
    in-doubt read (a failed pass: the last success and the gauges kept); a read
    after the entry was reversed (a failed pass that still counts what it
    resolved); the count of pending entries (a good pass, that gauge kept).  The
    cardholder gets the money back once."""
    before = await stack.balance(card)
    await purchase_in_flight_when_the_switch_dies(stack, card, monkeypatch, 3300)
    switch = await stack.start_switch()
    assert switch.recovery is not None and switch.store is not None
    await switch.recovery.close()  # only this test's passes set the gauges read below
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=switch.recovery.in_doubt_after_s + 1)

    def count(name: str, **labels: str) -> float:
        return sample(switch, name, **labels) or 0.0

    with monkeypatch.context() as patched:
        patched.setattr(switch.store, "reverse_and_queue", store_down)
        stuck = await switch.recovery.sweep(later)
    assert (stuck.timed_out, stuck.in_doubt, stuck.unresolved) == (0, 1, 1)
    assert count("posp_recovery_unresolved_total") == 1
    assert count("posp_recovery_in_doubt_entries") == 1
    assert count("posp_journal_pending_entries") == 1
    succeeded = count("posp_recovery_last_success_timestamp_seconds")
    assert succeeded > 0

    with monkeypatch.context() as patched:
        patched.setattr(switch.store, "in_doubt_entries", store_down)
        with pytest.raises(StoreUnavailable):
            await switch.recovery.sweep(later)
    assert count("posp_recovery_sweeps_total", result="failed") == 1
    assert count("posp_recovery_last_success_timestamp_seconds") == succeeded
    assert count("posp_recovery_in_doubt_entries") == 1  # kept: not the failed pass's 0

    with monkeypatch.context() as patched:
        patched.setattr(switch.store, "due_deferred", store_down)  # after the in-doubt work
        with pytest.raises(StoreUnavailable):
            await switch.recovery.sweep(later)
    assert count("posp_recovery_sweeps_total", result="failed") == 2
    assert count("posp_recovery_resolved_total", outcome="timed_out") == 1  # counted all the same
    assert count("posp_recovery_last_success_timestamp_seconds") == succeeded
    assert count("posp_recovery_in_doubt_entries") == 1  # the last good pass's

    with monkeypatch.context() as patched:
        patched.setattr(switch.store, "open_entries", store_down)
        uncounted = await switch.recovery.sweep(later)
    assert uncounted.open_entries is None and uncounted.in_doubt == 0
    assert count("posp_recovery_sweeps_total", result="ok") == 2
    assert count("posp_recovery_last_success_timestamp_seconds") >= succeeded
    assert count("posp_recovery_in_doubt_entries") == 0
    assert count("posp_journal_pending_entries") == 1  # not counted: the last count kept

    assert (await switch.recovery.sweep(later)).timed_out == 0  # reversed once
    assert count("posp_journal_pending_entries") == 0
    await saf_settled(stack)
    assert await stack.balance(card) == before
    assert count("posp_recovery_resolved_total", outcome="timed_out") == 1
    assert count("posp_recovery_unresolved_total") == 1
    assert issuer_0420s(stack) == 1


async def test_a_timed_out_entry_whose_hold_release_fails_counts_as_both(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep reverses the entry (its 0420 queued with the state change) and
    then fails to give back its risk hold: timed out AND unresolved, once; the
    money comes back all the same, and a later pass does not reverse it again."""
    before = await stack.balance(card)
    terminal = await purchase_in_flight_when_the_switch_dies(stack, card, monkeypatch, 3500)
    switch = await stack.start_switch()
    assert switch.recovery is not None and stack.store is not None
    await switch.recovery.close()  # only this test's passes set the metrics read below
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=switch.recovery.in_doubt_after_s + 1)

    with monkeypatch.context() as patched:
        patched.setattr("posp.pipeline.recovery.release_hold", store_down)
        swept = await switch.recovery.sweep(later)
    assert (swept.timed_out, swept.unresolved, swept.reservations_released) == (1, 1, 0)
    assert sample(switch, "posp_recovery_resolved_total", outcome="timed_out") == 1
    assert sample(switch, "posp_recovery_unresolved_total") == 1
    await saf_settled(stack)
    assert await stack.balance(card) == before
    trace = f"{terminal.machine.state.last_trace:06d}"
    original = await stack.store.find_by_trace(TERMINAL, BATCH, trace)
    assert original is not None and original.state == "timed_out"
    assert not await hold_released(stack, original.id)  # not retried by the sweep
    again = await switch.recovery.sweep(later)
    assert (again.timed_out, again.unresolved) == (0, 0)
    assert issuer_0420s(stack) == 1


async def test_an_approval_whose_answer_cannot_be_maced_is_reversed_by_the_switch(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario 2a: the HSM fails on the answer's MAC: the terminal gets 96 (not an
    unsigned 00), the entry is reversed, and the issuer gives the money back once."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    fail_answer_macs(stack, monkeypatch)
    outcome = await terminal.transact(lambda m: m.purchase(card, 4200, pin=card.pin))
    assert outcome.response_code == "96"
    monkeypatch.undo()
    await saf_settled(stack)
    assert await stack.balance(card) == before
    assert stack.store is not None
    entry = await stack.store.find_by_trace(TERMINAL, BATCH, outcome.trace)
    assert entry is not None and entry.state == "reversed" and entry.response_code == "96"
    assert await hold_released(stack, entry.id)
    assert issuer_0420s(stack) == 1


async def test_an_approval_whose_connection_is_gone_is_reversed_by_the_switch(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal's connection closes while the issuer decides: nobody receives
    the 00, so the switch reverses the approval itself."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    received, release = gate_issuer(stack, monkeypatch)
    assert stack.switch is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.switch.port)
    writer.write(terminal.machine.purchase(card, 1800, pin=card.pin))
    await received.wait()
    writer.close()
    await writer.wait_closed()
    del reader
    release.set()
    await eventually(lambda: issuer_0420s(stack) == 1, timeout_s=8)
    await saf_settled(stack)
    assert await stack.balance(card) == before
    assert stack.store is not None
    trace = f"{terminal.machine.state.last_trace:06d}"
    entry = await stack.store.find_by_trace(TERMINAL, BATCH, trace)
    assert entry is not None and entry.state == "reversed"


async def test_a_0400_sent_while_the_hsm_is_down_is_honoured_once_it_is_back(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario 2b: the 0400 is journaled and kept (answered 00: the terminal clears
    its reversal on any 0410); once the HSM answers, its MAC is checked and the
    purchase reversed."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    await answered_but_lost(stack, terminal, terminal.machine.purchase(card, 2700, pin=card.pin))

    async def hsm_down(*_args: Any, **_kwargs: Any) -> bool:
        raise HsmUnavailable("HSM connection lost")

    monkeypatch.setattr(switch_hsm(stack), "verify_mac", hsm_down)
    assert stack.switch is not None and stack.switch.recovery is not None
    # only this test's passes: none reschedules the kept 0400, and the gauges read
    # below are theirs
    await stack.switch.recovery.close()
    outcome = await terminal.exchange(terminal.machine.reversal())
    assert outcome.response_code == "00"
    assert await stack.balance(card) == before - 2700
    waiting = await stack.switch.recovery.sweep()
    assert waiting.reversals_waiting == 1 and waiting.reversals_applied == 0
    assert sample(stack.switch, "posp_recovery_kept_reversals_waiting") == 1
    monkeypatch.undo()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    assert (await stack.switch.recovery.sweep(later)).reversals_applied == 1
    assert sample(stack.switch, "posp_recovery_kept_reversals_waiting") == 0
    assert sample(stack.switch, "posp_recovery_resolved_total", outcome="reversal_applied") == 1
    await saf_settled(stack)
    assert await stack.balance(card) == before
    assert (await stack.switch.recovery.sweep(later)).reversals_applied == 0  # once
    assert issuer_0420s(stack) == 1


async def test_a_kept_0400_whose_mac_never_verifies_is_journaled_a0_and_not_applied(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    await answered_but_lost(stack, terminal, terminal.machine.purchase(card, 2900, pin=card.pin))
    reversal = terminal.machine.reversal()
    forged = reversal[:-8] + b"DEADBEEF"

    async def hsm_down(*_args: Any, **_kwargs: Any) -> bool:
        raise HsmUnavailable("HSM connection lost")

    monkeypatch.setattr(switch_hsm(stack), "verify_mac", hsm_down)
    assert stack.switch is not None and stack.switch.recovery is not None
    answer = await send_raw(stack.switch.port, forged)
    assert answer.message[39] == "00"
    monkeypatch.undo()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    assert (await stack.switch.recovery.sweep(later)).reversals_refused == 1
    assert stack.store is not None
    kept = await stack.store.find_by_trace(TERMINAL, BATCH, answer.message.text(11), "reversal")
    assert kept is not None and kept.state == "declined" and kept.response_code == "A0"
    assert await stack.balance(card) == before - 2900
    assert issuer_0420s(stack) == 0


async def test_a_0400_after_the_switchs_own_0420_was_delivered_queues_no_second_one(
    stack: Stack, card: TerminalCard
) -> None:
    """Scenario 3: 98 → the switch's 0420 delivered; the terminal's 0400 then finds
    the original already reversed upstream: 00 and no new 0420."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    assert stack.switch is not None
    frame = terminal.machine.purchase(card, DROP_AMOUNT_MINOR, pin=card.pin)
    answer = await send_raw(stack.switch.port, frame)
    assert answer.message[39] == "98"
    terminal.machine.on_timeout()  # as an auditing terminal would: not approved → reverse
    await saf_settled(stack)
    assert issuer_0420s(stack) == 1
    reversal = await terminal.exchange(terminal.machine.reversal())
    assert reversal.response_code == "00"
    assert stack.store is not None
    assert await stack.store.saf_depth() == 0
    original = await stack.store.find_by_trace(TERMINAL, BATCH, reversal.trace)
    assert original is not None and original.state == "reversed" and original.id is not None
    queued = await stack.store.get_saf(original.id)
    assert queued is not None and queued.delivered_at is not None
    assert issuer_0420s(stack) == 1
    assert await stack.balance(card) == before


async def test_a_0400_for_a_purchase_refused_before_it_was_sent_queues_no_0420(
    stack: Stack, card: TerminalCard
) -> None:
    """An entry that provably never left (the network was down: 91) is reversed in
    the journal alone."""
    terminal = await stack.terminal()
    await stack.stop_issuer()
    assert stack.switch is not None
    link = stack.switch.link
    await eventually(lambda: not link.signed_on)
    frame = terminal.machine.purchase(card, 500, pin=card.pin)
    answer = await send_raw(stack.switch.port, frame)
    assert answer.message[39] == "91"
    terminal.machine.on_timeout()
    assert (await terminal.exchange(terminal.machine.reversal())).response_code == "00"
    assert stack.store is not None
    assert await stack.store.saf_depth() == 0


async def test_a_0400_the_switch_cannot_apply_gets_no_answer_and_its_repeat_is_honoured(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store trouble while reversing: no 0410 (which would clear the terminal's
    reversal), so the terminal sends it again and the repeat reverses once."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    await answered_but_lost(stack, terminal, terminal.machine.purchase(card, 2300, pin=card.pin))
    assert stack.switch is not None and stack.switch.pipeline is not None
    store = stack.switch.pipeline.services.store

    async def store_down(*_args: Any, **_kwargs: Any) -> bool:
        raise StoreUnavailable("reverse_and_queue: database unavailable")

    monkeypatch.setattr(store, "reverse_and_queue", store_down)
    reversal = terminal.machine.reversal()
    with pytest.raises(TimeoutError):
        await send_raw(stack.switch.port, reversal, timeout_s=3)
    monkeypatch.undo()
    assert (await send_raw(stack.switch.port, reversal)).message[39] == "00"
    await saf_settled(stack)
    assert await stack.balance(card) == before
    assert issuer_0420s(stack) == 1


async def test_a_0400_entry_a_dead_switch_left_pending_is_closed_by_the_sweeper(
    stack: Stack, card: TerminalCard
) -> None:
    """The 0400's own entry, journaled before its MAC check, is closed once its
    deadline is long past: 00 when the original was reversed, 96 when not."""
    terminal = await stack.terminal()
    await answered_but_lost(stack, terminal, terminal.machine.purchase(card, 1900, pin=card.pin))
    assert stack.store is not None and stack.switch is not None
    trace = f"{terminal.machine.state.last_trace:06d}"
    original = await stack.store.find_by_trace(TERMINAL, BATCH, trace)
    assert original is not None and original.id is not None
    cut_off = dataclasses.replace(
        original, id=None, direction="reversal", txn_type="reversal", mti="0400", state="pending"
    )
    entry_id = await stack.store.insert_entry(cut_off)
    assert stack.switch.recovery is not None
    later = dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=stack.switch.recovery.in_doubt_after_s + 1
    )
    assert (await stack.switch.recovery.sweep(later)).reversals_closed == 1
    closed = await stack.store.get_entry(entry_id)
    assert closed is not None and (closed.state, closed.response_code) == ("declined", "96")
    assert (await stack.store.get_entry(original.id)).state == "approved"  # type: ignore[union-attr]
    assert (await terminal.exchange(terminal.machine.reversal())).response_code == "00"
    assert (await stack.switch.recovery.sweep(later)).reversals_closed == 0


async def test_an_answer_that_arrives_after_the_entry_was_reversed_is_not_counted(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal's 0400 reverses a purchase still in flight; the network then
    approves it: the terminal gets 98, never a 00 for a sale reversed upstream."""
    terminal = await stack.terminal()
    before = await stack.balance(card)
    received, release = gate_issuer(stack, monkeypatch)
    assert stack.switch is not None
    frame = terminal.machine.purchase(card, 2100, pin=card.pin)
    sending = asyncio.create_task(send_raw(stack.switch.port, frame, timeout_s=30))
    await received.wait()
    assert stack.switch.pipeline is not None
    saf = stack.switch.pipeline.services.saf
    assert saf is not None
    await saf.close()  # the 0420 waits, so the network approves first
    terminal.machine.on_timeout()
    session = stack.session(terminal.machine)
    assert (await session.exchange(terminal.machine.reversal())).response_code == "00"
    release.set()
    answer = await sending
    assert answer.message[39] == "98"
    await saf.start()
    await saf_settled(stack)
    assert await stack.balance(card) == before
    assert issuer_0420s(stack) == 1


async def test_an_undeliverable_approval_the_store_cannot_reverse_gets_no_answer(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer's MAC fails and the switch's own reversal fails too (store
    trouble): no answer at all, so the terminal reverses it with its 0400."""
    terminal = await stack.terminal()
    before = await stack.balance(card)

    async def store_down(*_args: Any, **_kwargs: Any) -> bool:
        raise StoreUnavailable("reverse_and_queue: database unavailable")

    assert stack.switch is not None and stack.switch.pipeline is not None
    fail_answer_macs(stack, monkeypatch)
    monkeypatch.setattr(stack.switch.pipeline.services.store, "reverse_and_queue", store_down)
    with pytest.raises(TimeoutError):
        await send_raw(stack.switch.port, terminal.machine.purchase(card, 3300, pin=card.pin), 3)
    monkeypatch.undo()
    terminal.machine.on_timeout()
    assert (await terminal.exchange(terminal.machine.reversal())).response_code == "00"
    await saf_settled(stack)
    assert await stack.balance(card) == before
    assert issuer_0420s(stack) == 1


async def test_an_approval_committed_as_the_deadline_cancels_its_write_is_reversed(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcome write of an approval commits, but the request's deadline cancels
    its caller (a commit cannot be taken back; the SQLite writer and the PostgreSQL
    group commit finish a started write): the terminal is not told 00, so the
    entry must end reversed with its one 0420 — not approved in the journal while
    the issuer gives the money back (the merchant would be paid for nothing)."""
    assert stack.switch is not None and stack.store is not None
    terminal = await stack.terminal()
    before = await stack.balance(card)
    store = stack.switch.pipeline.services.store
    finish_entry = store.finish_entry
    committed = asyncio.Event()

    async def commit_then_hang(entry_id: int, *args: Any, **kwargs: Any) -> bool:
        won = await finish_entry(entry_id, *args, **kwargs)
        committed.set()
        await asyncio.Event().wait()  # until the deadline cancels the request
        return won

    services = stack.switch.pipeline.services
    limits = services.settings.limits.model_copy(update={"request_deadline_s": 3.0})
    monkeypatch.setattr(
        services, "settings", services.settings.model_copy(update={"limits": limits})
    )
    monkeypatch.setattr(store, "finish_entry", commit_then_hang)
    outcome = await terminal.transact(lambda m: m.purchase(card, 2700, pin=card.pin))
    monkeypatch.undo()
    assert committed.is_set() and outcome.response_code != "00"
    await saf_settled(stack)
    assert await stack.balance(card) == before
    entry = await stack.store.find_by_trace(TERMINAL, BATCH, outcome.trace)
    assert entry is not None and entry.state == "reversed"
    assert await hold_released(stack, entry.id)
    assert issuer_0420s(stack) == 1
