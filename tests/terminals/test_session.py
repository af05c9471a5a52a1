"""TerminalSession over TCP against a fake switch on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import pytest

from posp.iso8583.message import Message
from terminals.cards import TerminalCard
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from terminals.outcome import Event
from terminals.session import SessionOptions, TerminalSession
from terminals.txn import TxnKind
from tests.terminals.fakeswitch import TMK, FakeSwitch, serve

CARD = TerminalCard("6225880000000001", "2812", "123456")


@pytest.fixture
async def switch_port() -> AsyncIterator[tuple[FakeSwitch, int]]:
    switch = FakeSwitch()
    server = await serve(switch)
    port = server.sockets[0].getsockname()[1]
    yield switch, port
    server.close()
    await server.wait_closed()


def session_for(port: int, *, long: bool = False, timeout_s: float = 2.0) -> TerminalSession:
    machine = TerminalMachine(TerminalConfig("12345678", "123456789012345", TMK))
    options = SessionOptions(
        port=port, response_timeout_s=timeout_s, long_connection=long, sign_in_variant="004"
    )
    return TerminalSession(machine, options)


@pytest.mark.parametrize("long", [False, True])
async def test_transact_signs_in_then_purchases(
    switch_port: tuple[FakeSwitch, int], long: bool
) -> None:
    switch, port = switch_port
    session = session_for(port, long=long)
    outcome = await session.transact(lambda m: m.purchase(CARD, 1500, pin="123456"))
    assert outcome.approved and outcome.kind is TxnKind.PURCHASE
    assert [m.mti for m in switch.seen] == ["0800", "0200"]
    assert session.connected is long
    await session.close()


async def test_unanswered_purchase_is_reversed_before_the_next(
    switch_port: tuple[FakeSwitch, int],
) -> None:
    switch, port = switch_port

    def drop_first_purchase(msg: Message) -> str | None:
        purchases = [m for m in switch.seen if m.mti == "0200"]
        return None if msg.mti == "0200" and len(purchases) == 1 else "00"

    switch.override = drop_first_purchase
    session = session_for(port, timeout_s=0.2)
    outcome = await session.transact(lambda m: m.purchase(CARD, 99404))
    assert outcome.event is Event.TIMEOUT and outcome.reversal_queued
    second = await session.transact(lambda m: m.purchase(CARD, 100))
    assert second.approved
    mtis = [m.mti for m in switch.seen]
    assert mtis == ["0800", "0200", "0400", "0200"]
    assert switch.seen[2][11] == switch.seen[1][11] and switch.seen[2][39] == "98"


def _purchase(amount_minor: int, machine: TerminalMachine) -> bytes:
    return machine.purchase(CARD, amount_minor)


async def test_settle_runs_settlement_and_upload(switch_port: tuple[FakeSwitch, int]) -> None:
    switch, port = switch_port
    session = session_for(port, long=True)
    for amount in (100, 200, 300):
        assert (await session.transact(functools.partial(_purchase, amount))).approved
    outcome = await session.settle()
    assert outcome.approved and outcome.balanced
    assert [m.mti for m in switch.seen[-3:]] == ["0500", "0320", "0320"]
    assert session.machine.state.batch == "000043"
    await session.close()


async def test_connection_refused_is_a_comms_error_without_reversal() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    session = session_for(port)
    outcome = await session.transact(lambda m: m.purchase(CARD, 100))
    assert outcome.event is Event.COMMS_ERROR and outcome.kind is TxnKind.SIGN_IN
    assert not session.machine.reversal_due
