"""Terminal lifecycle end to end (terminal-link.md §10-§11): a dormant terminal is
answered 58 at sign-in and on transactions until reactivated; the device bound
at the first sign-in freezes the terminal (58) when it changes, until unbound;
every change journaled as an event."""

from __future__ import annotations

import datetime as dt

from posp.iso8583.tms_identity import TerminalIdentity
from posp.pipeline.lifecycle import operator_action
from posp.risk.lifecycle import TerminalRiskState
from posp.store.risk_records import SqlRiskRecords
from posp.store.sql_store import SqlStore
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from tests.e2e.conftest import MERCHANT_ID, TMK_HEX, Stack

TERMINAL_ID = "10000001"


def today(stack: Stack) -> dt.date:
    """The switch's local day (its business clock, not the test machine's)."""
    assert stack.switch is not None and stack.switch.pipeline is not None
    return stack.switch.pipeline.services.local_now().date()


def records(stack: Stack) -> SqlRiskRecords:
    assert isinstance(stack.store, SqlStore)
    assert stack.switch is not None and stack.switch.risk is not None
    stack.switch.risk.terminal_states.clear()  # the test changes the store behind the switch
    return SqlRiskRecords(stack.store)


async def test_a_dormant_terminal_answers_58_until_reactivated(stack: Stack) -> None:
    card = stack.cards[1]
    terminal = await stack.terminal(TERMINAL_ID)
    long_ago = today(stack) - dt.timedelta(days=400)
    idle = TerminalRiskState(registered_on=long_ago, last_active_on=long_ago)
    await records(stack).put_terminal_state(TERMINAL_ID, idle)
    refused = await terminal.transact(lambda m: m.purchase(card, 1200, pin=card.pin))
    assert refused.response_code == "58"
    assert (await terminal.exchange(terminal.machine.sign_in("003"))).response_code == "58"
    assert (
        await operator_action(records(stack), TERMINAL_ID, "reactivate", today(stack))
        == "reactivated"
    )
    assert (await terminal.exchange(terminal.machine.sign_in("003"))).approved
    assert (await terminal.transact(lambda m: m.purchase(card, 1200, pin=card.pin))).approved
    events = [event for event, _ in await records(stack).events(TERMINAL_ID)]
    assert events == ["dormant", "reactivated"]


async def test_an_active_terminal_stays_active_at_exactly_the_dormancy_limit(stack: Stack) -> None:
    card = stack.cards[1]
    terminal = await stack.terminal(TERMINAL_ID)
    limit = stack.settings().risk.dormant_after_days
    edge = today(stack) - dt.timedelta(days=limit)
    await records(stack).put_terminal_state(
        TERMINAL_ID, TerminalRiskState(registered_on=edge, last_active_on=edge)
    )
    assert (await terminal.transact(lambda m: m.purchase(card, 1300, pin=card.pin))).approved
    state = await records(stack).terminal_state(TERMINAL_ID)
    assert state is not None and state.last_active_on == today(stack)


async def test_another_device_freezes_the_terminal_until_unbound(stack: Stack) -> None:
    card = stack.cards[1]
    first = await stack.terminal(TERMINAL_ID, device_serial="SN-FIRST")
    state = await records(stack).terminal_state(TERMINAL_ID)
    assert state is not None and state.bound_serial == "SN-FIRST"
    other = TerminalMachine(
        TerminalConfig(TERMINAL_ID, MERCHANT_ID, bytes.fromhex(TMK_HEX), device_serial="SN-OTHER")
    )
    intruder = stack.session(other)
    assert (await intruder.exchange(other.sign_in("003"))).response_code == "58"
    frozen = await first.transact(lambda m: m.purchase(card, 1400, pin=card.pin))
    assert frozen.response_code == "58"  # the whole terminal is frozen
    assert await operator_action(records(stack), TERMINAL_ID, "unbind", today(stack)) == "unbound"
    assert (await intruder.exchange(other.sign_in("003"))).approved  # binds SN-OTHER now
    events = [event for event, _ in await records(stack).events(TERMINAL_ID)]
    assert events == ["device_bound", "frozen_serial_changed", "unbound", "device_bound"]


async def test_a_sim_moved_out_of_the_terminal_freezes_it_until_unbound(stack: Stack) -> None:
    """F59 A2/06: the SIM bound at the first sign-in replaced by another freezes
    the terminal (58 on purchases and sign-ins, even with the first SIM back, the
    issuer's balance untouched) until ``unbind``; the next sign-in binds the new SIM."""
    card = stack.cards[1]
    await stack.provision(TERMINAL_ID)
    machine = TerminalMachine(TerminalConfig(TERMINAL_ID, MERCHANT_ID, bytes.fromhex(TMK_HEX)))

    def presents(iccid: str) -> None:
        identity = TerminalIdentity(hardware_serial="TUSN0001", iccid=iccid)
        machine.state.tms.identity = identity.render()

    presents("89860000000000000001")
    terminal = stack.session(machine)
    assert (await terminal.exchange(machine.sign_in("003"))).approved
    assert (await terminal.transact(lambda m: m.purchase(card, 1500, pin=card.pin))).approved
    state = await records(stack).terminal_state(TERMINAL_ID)
    assert state is not None and state.bound_iccid == "89860000000000000001"
    presents("89860000000000000999")  # the SIM moved: another one in the terminal
    before = await stack.balance(card)
    frozen = await terminal.transact(lambda m: m.purchase(card, 1501, pin=card.pin))
    assert frozen.response_code == "58"
    assert await stack.balance(card) == before
    presents("89860000000000000001")  # the first SIM back does not thaw it
    assert (await terminal.exchange(machine.sign_in("003"))).response_code == "58"
    assert await operator_action(records(stack), TERMINAL_ID, "unbind", today(stack)) == "unbound"
    presents("89860000000000000999")
    assert (await terminal.exchange(machine.sign_in("003"))).approved
    assert (await terminal.transact(lambda m: m.purchase(card, 1502, pin=card.pin))).approved
    events = [event for event, _ in await records(stack).events(TERMINAL_ID)]
    assert events == ["device_bound", "frozen_sim_changed", "unbound", "device_bound"]
