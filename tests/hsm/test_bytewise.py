"""The HSM client connection and the simulator's server protocol cut frames fed
to data_received one byte at a time exactly as whole ones."""

from __future__ import annotations

from hsm_sim.server import HsmServer, HsmServerProtocol
from posp.hsm.connection import HsmConnection
from posp.hsm.stats import HsmClientStats
from tests.bytewise import FakeTransport, feed_bytewise, read_written


class Owner:
    """A ConnectionOwner that only records what the connection tells it."""

    def __init__(self) -> None:
        self.stats = HsmClientStats()
        self.max_in_flight = 8
        self.freed = 0
        self.lost: list[HsmConnection] = []

    def slot_freed(self) -> None:
        self.freed += 1

    def connection_lost(self, conn: HsmConnection) -> None:
        self.lost.append(conn)


def framed(body: bytes) -> bytes:
    return len(body).to_bytes(2, "big") + body


async def test_client_connection_matches_replies_fed_one_byte_at_a_time() -> None:
    owner = Owner()
    conn = HsmConnection(owner, header_length=4)
    transport = FakeTransport()
    conn.connection_made(transport)
    first = conn.submit(b"B20004PING", timeout_s=5.0)
    second = conn.submit(b"B20004PONG", timeout_s=5.0)
    sent = await read_written(transport, 2 * (2 + 4 + 10))
    header_1, header_2 = sent[2:6], sent[18:22]
    feed_bytewise(conn, framed(header_2 + b"B3000004PONG") + framed(header_1 + b"B3000004PING"))
    assert await first == b"B3000004PING" and await second == b"B3000004PONG"
    assert owner.freed == 2 and owner.stats.unmatched_replies == 0
    conn.connection_lost(None)
    assert owner.lost == [conn]


async def test_simulator_protocol_answers_frames_fed_one_byte_at_a_time(
    hsm_server: HsmServer,
) -> None:
    protocol = HsmServerProtocol(hsm_server)
    transport = FakeTransport()
    protocol.connection_made(transport)
    feed_bytewise(protocol, framed(b"0001B20004PING") + framed(b"0002B20004PONG"))
    replies = await read_written(transport, 2 * (2 + 12))
    assert replies == framed(b"0001B300PING") + framed(b"0002B300PONG")
    protocol.connection_lost(None)


async def test_simulator_protocol_whole_frame_fast_path_equals_bytewise(
    hsm_server: HsmServer,
) -> None:
    """The one-frame-per-read fast path answers as the byte-by-byte path does."""
    whole, bytewise = FakeTransport(), FakeTransport()
    for transport in (whole, bytewise):
        protocol = HsmServerProtocol(hsm_server)
        protocol.connection_made(transport)
        request = framed(b"0007B20004ECHO")
        if transport is whole:
            protocol.data_received(request)
        else:
            feed_bytewise(protocol, request)
        await read_written(transport, 2 + 12)
        protocol.connection_lost(None)
    assert whole.data == bytewise.data
