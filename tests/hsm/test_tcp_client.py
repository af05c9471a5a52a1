"""The TCP transport under faults: deadlines, late replies, broken and restarted HSMs."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hsm_sim.server import HsmServer, start_hsm_server
from posp.errors import ConfigError, HsmTimeout, HsmUnavailable
from posp.hsm import HsmClient, TcpTransport, open_hsm_client
from posp.lab.inprocess_hsm import InProcessTransport
from tests.hsm.echo_engine import EchoEngine
from tests.hsm.fault_proxy import FaultProxy


@pytest.fixture
async def echo_server() -> AsyncIterator[HsmServer]:
    server = await start_hsm_server(host="127.0.0.1", port=0, metrics_port=0, engine=EchoEngine())
    yield server
    await server.close()


@pytest.fixture
async def proxy(echo_server: HsmServer) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(echo_server.port)
    await proxy.start()
    yield proxy
    await proxy.close()


def tcp_client(port: int, **options: Any) -> tuple[HsmClient, TcpTransport]:
    """The typed client over a TCP transport to ``port`` (and that transport)."""
    transport = TcpTransport("127.0.0.1", port, **options)
    return HsmClient(transport), transport


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_many_concurrent_calls_each_get_their_own_reply(echo_server: HsmServer) -> None:
    client, pool = tcp_client(echo_server.port, connections=3, timeout_s=5.0)
    await pool.wait_connected(3)
    words = [f"W{i:05d}" for i in range(2000)]
    assert await asyncio.gather(*(client.echo(w) for w in words)) == words
    assert pool.stats.calls == 2000 and pool.in_flight == 0
    await client.close()


async def test_replies_out_of_order_are_matched_by_header() -> None:
    """A peer that answers each batch in reverse order still gives every call its reply."""

    async def reversing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = []
        for _ in range(5):
            (size,) = struct.unpack(">H", await reader.readexactly(2))
            frames.append(await reader.readexactly(size))
        for frame in reversed(frames):
            reply = frame[:4] + b"B300" + frame[10:]
            writer.write(struct.pack(">H", len(reply)) + reply)
        await writer.drain()

    server = await asyncio.start_server(reversing, "127.0.0.1", 0)
    client, pool = tcp_client(server.sockets[0].getsockname()[1], connections=1)
    await pool.wait_connected(1)
    words = ["ONE", "TWO", "THREE", "FOUR", "FIVE"]
    assert await asyncio.gather(*(client.echo(w) for w in words)) == words
    await client.close()
    server.close()


async def test_a_slow_hsm_fails_the_call_at_its_deadline_and_counts_the_late_reply(
    proxy: FaultProxy,
) -> None:
    client, pool = tcp_client(proxy.port, connections=1, timeout_s=0.15)
    await pool.wait_connected(1)
    assert await client.echo("FAST") == "FAST"
    proxy.reply_delay_s = 0.6
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(HsmTimeout):
        await client.echo("SLOW")
    assert loop.time() - started < 0.5  # failed at its deadline, not when the reply came
    await asyncio.sleep(0.8)
    assert pool.stats.late_replies == 1 and pool.stats.timeouts == 1
    proxy.reply_delay_s = 0.0
    assert await client.echo("AGAIN") == "AGAIN"  # the late reply was not taken for this one
    await client.close()


async def test_a_broken_connection_fails_pending_calls_at_once(proxy: FaultProxy) -> None:
    client, pool = tcp_client(proxy.port, connections=1, timeout_s=10.0)
    await pool.wait_connected(1)
    proxy.hold_replies = True
    calls = [asyncio.create_task(client.echo(f"P{i}")) for i in range(20)]
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    proxy.break_connections()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert loop.time() - started < 1.0
    assert all(isinstance(r, HsmUnavailable) and not isinstance(r, HsmTimeout) for r in results)
    proxy.hold_replies = False
    await pool.wait_connected(1)
    assert await client.echo("BACK") == "BACK"
    assert pool.stats.reconnects == 1
    await client.close()


async def test_a_restarted_hsm_is_reconnected_and_serves_later_calls() -> None:
    port = free_port()
    server = await start_hsm_server(
        host="127.0.0.1", port=port, metrics_port=0, engine=EchoEngine()
    )
    client, pool = tcp_client(port, connections=2, timeout_s=1.0, reconnect_backoff_s=(0.01, 0.1))
    await pool.wait_connected(2)
    assert await client.echo("BEFORE") == "BEFORE"
    await server.close()
    await asyncio.sleep(0.05)
    with pytest.raises(HsmUnavailable):
        await client.echo("DOWN")
    server = await start_hsm_server(
        host="127.0.0.1", port=port, metrics_port=0, engine=EchoEngine()
    )
    await pool.wait_connected(2, timeout_s=5.0)
    assert await client.echo("AFTER") == "AFTER"
    assert pool.stats.reconnects >= 2
    await client.close()
    await server.close()


async def test_calls_fail_fast_when_no_hsm_is_listening() -> None:
    client, pool = tcp_client(free_port(), connections=2, timeout_s=5.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(HsmUnavailable):
        await client.echo()
    assert loop.time() - started < 2.0 and pool.stats.connect_failures >= 1
    await client.close()


async def test_calls_after_close_fail_with_unavailable(echo_server: HsmServer) -> None:
    client, pool = tcp_client(echo_server.port, connections=1)
    await pool.wait_connected(1)
    await client.close()
    with pytest.raises(HsmUnavailable):
        await client.echo()


async def test_a_saturated_pool_waits_for_a_free_slot_within_the_deadline(
    echo_server: HsmServer,
) -> None:
    client, pool = tcp_client(echo_server.port, connections=1, max_in_flight_per_connection=2)
    await pool.wait_connected(1)
    words = [str(i) for i in range(50)]
    assert await asyncio.gather(*(client.echo(w) for w in words)) == words
    await client.close()


def test_open_hsm_client_builds_either_transport_from_a_url() -> None:
    assert isinstance(open_hsm_client("inprocess://").transport, InProcessTransport)
    client = open_hsm_client("tcp://127.0.0.1:1600?connections=2&timeout_s=0.5")
    assert isinstance(client.transport, TcpTransport)
    assert (client.transport.port, client.transport.timeout_s) == (1600, 0.5)
    for bad in ("udp://x:1", "tcp://127.0.0.1", "tcp://h:1?colour=red", "tcp://h:1?timeout_s=x"):
        with pytest.raises(ConfigError):
            open_hsm_client(bad)


async def test_client_counters_are_exposed_to_an_injected_registry(
    echo_server: HsmServer,
) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    client, pool = tcp_client(echo_server.port, connections=2, registry=registry)
    await pool.wait_connected(2)
    await client.echo()
    assert registry.get_sample_value("posp_hsm_calls_total") == 1
    assert registry.get_sample_value("posp_hsm_connections_up") == 2
    await client.close()


async def test_a_reply_to_no_call_is_counted_and_exported_as_unmatched() -> None:
    """A peer that answers every call and then sends a reply under a header no call
    used: the call still gets its reply, the stray one is counted, not matched."""
    from prometheus_client import CollectorRegistry

    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (size,) = struct.unpack(">H", await reader.readexactly(2))
        frame = await reader.readexactly(size)
        stray = b"9999B300STRAY"
        reply = frame[:4] + b"B300" + frame[10:]
        writer.write(struct.pack(">H", len(stray)) + stray)
        writer.write(struct.pack(">H", len(reply)) + reply)
        await writer.drain()
        await reader.read()  # until the client closes

    server = await asyncio.start_server(chatty, "127.0.0.1", 0)
    registry = CollectorRegistry()
    port = server.sockets[0].getsockname()[1]
    client, pool = tcp_client(port, connections=1, registry=registry)
    await pool.wait_connected(1)
    assert await client.echo("ONE") == "ONE"
    assert pool.stats.unmatched_replies == 1
    assert registry.get_sample_value("posp_hsm_unmatched_replies_total") == 1
    await client.close()
    server.close()
