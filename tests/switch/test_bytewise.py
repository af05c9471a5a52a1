"""The switch's terminal Protocol answers requests fed to data_received one byte
at a time (and two requests in one segment) exactly as whole frames."""

from __future__ import annotations

from posp.framing import BinaryLengthFramer
from posp.iso8583 import Message, decode_terminal
from posp.server import TerminalConnection
from posp.switch import Switch
from tests.bytewise import FakeTransport, feed_bytewise, read_written
from tests.switch.conftest import MERCHANT_ID, TERMINAL_ID
from tests.switch.termclient import SimTerminal


def echo_frame(terminal: SimTerminal, trace: str) -> bytes:
    body = terminal.encode(Message("0820", {11: trace, 41: TERMINAL_ID, 60: "00000001301"}))
    return len(body).to_bytes(2, "big") + body


async def answers(transport: FakeTransport, count: int) -> list[bytes]:
    framer = BinaryLengthFramer(8192)
    bodies: list[bytes] = []
    seen = 0
    while len(bodies) < count:
        data = await read_written(transport, seen + 1)
        bodies += framer.feed(data[seen:])
        seen = len(data)
    return bodies


async def test_terminal_connection_answers_requests_fed_one_byte_at_a_time(
    switch: Switch,
) -> None:
    assert switch.server is not None
    terminal = SimTerminal(TERMINAL_ID, MERCHANT_ID)
    connection = TerminalConnection(switch.server)
    transport = FakeTransport()
    connection.connection_made(transport)
    feed_bytewise(connection, echo_frame(terminal, "000101") + echo_frame(terminal, "000102"))
    bodies = await answers(transport, 2)
    messages = [decode_terminal(body).message for body in bodies]
    decoded = sorted((m.text(11), m.text(39)) for m in messages)
    assert decoded == [("000101", "00"), ("000102", "00")]
    connection.connection_lost(None)
