"""TerminalSession over TCP against a fake switch on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from posp import loop as posp_loop
from posp.iso8583.message import Message
from terminals import session as session_module
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


# --- the connection itself: framing, drops, close -----------------------------


async def _raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    size = int.from_bytes(await reader.readexactly(2), "big")
    return await reader.readexactly(size)


async def test_an_answer_in_many_segments_is_reassembled() -> None:
    switch = FakeSwitch()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            answer = switch.answer(body)
            assert answer is not None
            framed = len(answer).to_bytes(2, "big") + answer
            for at in range(0, len(framed), 7):  # 1 byte of the prefix alone, then 7s
                writer.write(framed[at : at + 7] if at else framed[:1])
                await writer.drain()
                await asyncio.sleep(0.001)
                if not at:
                    writer.write(framed[1:7])
        writer.close()

    server, port = await _raw_server(trickle)
    session = session_for(port, long=True)
    try:
        outcome = await session.transact(lambda m: m.purchase(CARD, 1500))
        assert outcome.approved and session.connected and session.connects == 1
    finally:
        await session.close()
        server.close()
        await server.wait_closed()


async def test_a_hang_up_mid_answer_is_a_comms_error_after_sending() -> None:
    switch = FakeSwitch()

    async def half_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await _read_request(reader)
        if (answer := switch.answer(body)) is not None and switch.seen[-1].mti == "0200":
            writer.write((len(answer).to_bytes(2, "big") + answer)[:20])
            await writer.drain()
            writer.close()
            return
        assert answer is not None
        writer.write(len(answer).to_bytes(2, "big") + answer)
        await half_then_hang_up(reader, writer)

    server, port = await _raw_server(half_then_hang_up)
    session = session_for(port, long=True)
    try:
        outcome = await session.transact(lambda m: m.purchase(CARD, 1500))
        assert outcome.event is Event.COMMS_ERROR and outcome.reversal_queued
        assert not session.connected
    finally:
        server.close()
        await server.wait_closed()


def _reset_idle_connection_then(reconnect: bool) -> tuple[bool, Event, int]:
    """Sign in on a long connection the switch then resets while idle; send an echo."""

    async def body() -> tuple[bool, Event, int]:
        async def reset_after_answering(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            answer = FakeSwitch().answer(await _read_request(reader))
            assert answer is not None
            writer.write(len(answer).to_bytes(2, "big") + answer)
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        server, port = await _raw_server(reset_after_answering)
        session = session_for(port, long=True)
        try:
            assert (await session.prepare()) is None
            await asyncio.sleep(0.05)
            held = session.connected
            outcome = await session.exchange(session.machine.echo(), reconnect=reconnect)
            return held, outcome.event, session.connects
        finally:
            await session.close()
            server.close()
            await server.wait_closed()

    return posp_loop.run(body())


def test_a_reset_idle_long_connection_is_replaced_before_the_next_request() -> None:
    """As a terminal does: the switch dropped the idle connection, so the next request
    goes out on a fresh one (never written into the dead one, which would count
    as sent and queue a reversal for a request the switch never saw)."""
    held, event, connects = _reset_idle_connection_then(reconnect=True)
    assert held and event is Event.RESPONSE and connects == 2


def test_without_reconnect_a_reset_idle_connection_fails_the_exchange_on_uvloop() -> None:
    """The fleet's hold probe (reconnect=False): the drop shows as a comms error (on
    uvloop a closed transport refuses writes outright)."""
    held, event, connects = _reset_idle_connection_then(reconnect=False)
    assert held and event is Event.COMMS_ERROR and connects == 1


async def test_a_cancelled_read_drops_the_connection(switch_port: tuple[FakeSwitch, int]) -> None:
    """Cancelled while waiting for an answer (a caller's own deadline): the connection
    goes, so that answer can never be taken for the next request's."""
    switch, port = switch_port
    session = session_for(port, long=True)
    assert (await session.prepare()) is None
    switch.override = lambda _msg: None  # drop every answer
    pending = asyncio.ensure_future(session.exchange(session.machine.echo()))
    await asyncio.sleep(0.05)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert not session.connected


async def test_close_never_waits_long_for_a_connection_that_does_not_report_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class StuckTransport:
        aborted = False

        def close(self) -> None:
            pass  # connection_lost never comes

        def abort(self) -> None:
            self.aborted = True

    monkeypatch.setattr(session_module, "CLOSE_WAIT_S", 0.05)
    session = session_for(1)
    protocol = session_module._FrameProtocol(asyncio.get_running_loop())
    transport = StuckTransport()
    protocol.transport = transport  # type: ignore[assignment]
    session._protocol = protocol
    await asyncio.wait_for(session.close(), 2)
    assert transport.aborted and not session.connected
    await session.close()  # closing twice is harmless


async def test_close_after_the_switch_hung_up_returns_at_once(
    switch_port: tuple[FakeSwitch, int],
) -> None:
    _switch, port = switch_port
    session = session_for(port, long=True)
    assert (await session.prepare()) is None
    protocol = session._protocol
    assert protocol is not None and protocol.transport is not None
    protocol.transport.close()
    await asyncio.sleep(0.01)
    await asyncio.wait_for(session.close(), 0.5)
    assert not session.connected
