"""Issue 12's three reproductions, one purchase each, against real processes
(``posp serve``, ``issuer-sim --durable``, ``hsm-sim``), ending with the money audit:
the card's balance at the issuer must match what the terminal saw, with exactly
one 0420 per reversed original and nothing left pending in the switch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from posp.store.sql_store import DEFAULT_SAF_LEASE_S
from tests.faults.audit import read_reversal_lines, wait_switch_settled
from tests.faults.driver import AMOUNT_BASE_MINOR
from tests.faults.hsmproxy import HsmStopProxy
from tests.faults.procs import FaultStack
from tests.faults.scenario import issuer_booked, start_run, until

PIN_AMOUNT_MINOR = AMOUNT_BASE_MINOR + 1  # odd amounts carry a PIN (driver)


async def test_switch_killed_while_the_purchase_is_at_the_issuer_leaves_no_debit(
    stack: FaultStack,
) -> None:
    """Scenario 1: issuer latency 3 s, a PIN purchase, kill -9 of the switch once the
    issuer has received it, restart on the same data, latency 0, the terminal's 0400:
    once the SAF queue is empty the card is back to its opening balance."""
    run = await start_run(stack, 1)
    terminal, card = run.fleet.terminals[0], run.fleet.cards[0]
    stack.set_rules(latency_ms=3000)
    before = stack.received("0200")
    purchase = asyncio.create_task(terminal.purchase(0, card, PIN_AMOUNT_MINOR))
    await until(lambda: stack.received("0200") > before, "issuer received the purchase")
    await asyncio.to_thread(stack.kill, "switch1")
    outcome = await purchase
    assert not outcome.approved and outcome.reversal_queued
    stack.set_rules(latency_ms=0)  # before the restarted switch's 0420 can leave
    await asyncio.to_thread(stack.start_switch, "switch1")
    await until(lambda: issuer_booked(stack.issuer_db, card.pan, PIN_AMOUNT_MINOR), "booked")
    report = await run.finish()
    assert report.reversals_answered == 1
    assert report.clean, report.summary()


@pytest.fixture
async def hsm_proxy(stack: FaultStack) -> AsyncIterator[HsmStopProxy]:
    """hsm-sim behind an :class:`HsmStopProxy`, which the stack's switch uses."""
    await asyncio.to_thread(stack.start_hsm)
    proxy = HsmStopProxy(stack.ports["hsm"], stack.faults)
    await proxy.start()
    stack.hsm_url = f"tcp://127.0.0.1:{proxy.port}"
    yield proxy
    await proxy.close()


async def test_answer_mac_lost_to_an_hsm_outage_ends_undebited_with_one_0420(
    stack: FaultStack, hsm_proxy: HsmStopProxy
) -> None:
    """Scenario 2: the HSM stops right after checking the network answer's MAC, before
    the terminal answer's MAC; the terminal's 0400 (if it has one) arrives while it is
    down; the HSM comes back: the card ends un-debited, with exactly one 0420."""
    run = await start_run(stack, 1)
    terminal, card = run.fleet.terminals[0], run.fleet.cards[0]
    hsm_proxy.arm()
    outcome = await terminal.purchase(0, card, PIN_AMOUNT_MINOR)
    assert hsm_proxy.down.is_set() and not outcome.approved
    if terminal.machine.reversal_due:  # its 0400 while the HSM is down
        await terminal.session.exchange(terminal.machine.reversal())
    hsm_proxy.recover()
    report = await run.finish()
    assert report.originals_reversed_upstream == 1
    assert report.clean, report.summary()


async def test_0400_of_an_undelivered_approval_kept_through_an_hsm_outage(
    stack: FaultStack, hsm_proxy: HsmStopProxy
) -> None:
    """Scenario 2, second form: an approval the terminal gave up waiting for (issuer
    answers after 2 s, terminal timeout 1 s), then the HSM stops and the terminal's
    0400 arrives; the HSM comes back: card un-debited, exactly one 0420."""
    run = await start_run(stack, 1, response_timeout_s=1.0)
    terminal, card = run.fleet.terminals[0], run.fleet.cards[0]
    stack.set_rules(latency_ms=2000)
    outcome = await terminal.purchase(0, card, PIN_AMOUNT_MINOR)
    assert outcome.reversal_queued and terminal.machine.reversal_due
    await until(lambda: issuer_booked(stack.issuer_db, card.pan, PIN_AMOUNT_MINOR), "booked")
    await until(lambda: stack.control("/traffic")["in_progress"] == 0, "issuer answered")
    hsm_proxy.stop_now()
    answer = await terminal.session.exchange(terminal.machine.reversal())
    assert answer.response_code == "00" and not terminal.machine.reversal_due
    # The issuer answers at once again BEFORE the HSM comes back: the 0420 follows
    # the recovery at once, and one held 2 s could pass the link's deadline and be
    # sent again (a legitimate repeat the audit would count as a duplicate).
    stack.set_rules(latency_ms=0)
    hsm_proxy.recover()
    report = await run.finish()
    assert report.originals_reversed_upstream == 1
    assert report.clean, report.summary()


async def test_0400_cut_off_by_a_kill_leaves_no_entry_pending(
    stack: FaultStack, hsm_proxy: HsmStopProxy
) -> None:
    """A terminal 0400 is journaled, then the switch is killed while the HSM checks its
    MAC; after the restart the terminal sends it again: the card ends un-debited and
    no journal entry is left pending."""
    run = await start_run(stack, 1, response_timeout_s=1.0)
    terminal, card = run.fleet.terminals[0], run.fleet.cards[0]
    stack.set_rules(latency_ms=2000)
    outcome = await terminal.purchase(0, card, PIN_AMOUNT_MINOR)
    assert outcome.reversal_queued and terminal.machine.reversal_due
    await until(lambda: stack.control("/traffic")["in_progress"] == 0, "issuer answered")
    hsm_proxy.hang()
    reversal = asyncio.create_task(terminal.session.exchange(terminal.machine.reversal()))
    await asyncio.wait_for(hsm_proxy.held.wait(), 10.0)  # the 0400 is journaled by now
    await asyncio.to_thread(stack.kill, "switch1")
    assert (await reversal).response_code is None and terminal.machine.reversal_due
    stack.set_rules(latency_ms=0)  # before the 0420 can leave (as above)
    hsm_proxy.recover()
    await asyncio.to_thread(stack.start_switch, "switch1")
    # A 0420 whose attempt the kill cut off stays leased to the dead process for
    # the SAF lease (30 s), then goes again: the settle wait must outlast it.
    report = await run.finish(settle_timeout_s=DEFAULT_SAF_LEASE_S + 30.0)
    assert report.clean, report.summary()


async def test_terminal_0400_after_the_switch_own_0420_was_delivered_adds_no_second(
    tmp_path_factory: pytest.TempPathFactory, stacks: list[FaultStack]
) -> None:
    """Scenario 3: the issuer's answer is dropped, the terminal gives up first (its
    reversal due), the switch answers 98 and its own 0420 is delivered; then the
    terminal's 0400: exactly one 0420 reaches the issuer for that original."""
    stack = FaultStack(tmp_path_factory.mktemp("dropped"), network_timeout_s=2.0)
    stacks.append(stack)
    run = await start_run(stack, 1, response_timeout_s=1.0)
    terminal, card = run.fleet.terminals[0], run.fleet.cards[0]
    stack.set_rules(drop_amounts_minor=[PIN_AMOUNT_MINOR])
    outcome = await terminal.purchase(0, card, PIN_AMOUNT_MINOR)
    assert outcome.reversal_queued
    await until(lambda: stack.received("0420") == 1, "the switch's own 0420 delivered")
    assert (await wait_switch_settled(run.store_url, 30.0)).settled  # its SAF row is gone
    report = await run.finish()
    assert len(read_reversal_lines(stack.issuer_logs)) == 1
    assert report.clean, report.summary()
