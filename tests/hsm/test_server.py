"""The simulator's TCP server: pipelining, framing limits, bad clients, shaping, metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hsm_sim.server import CpsLimiter, HsmServer, start_hsm_server
from hsm_sim.settings import load_settings
from posp.errors import ConfigError
from posp.hsm import HsmClient, TcpTransport
from tests.hsm.echo_engine import EchoEngine


def frame(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 2.0))
    return await asyncio.wait_for(reader.readexactly(size), 2.0)


@pytest.fixture
async def echo_server() -> AsyncIterator[HsmServer]:
    server = await start_hsm_server(host="127.0.0.1", port=0, metrics_port=0, engine=EchoEngine())
    yield server
    await server.close()


async def still_serves(server: HsmServer) -> None:
    """A fresh client gets an answer: whatever happened before did not stop the server."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(frame(b"9999B20002OK"))
    assert await read_frame(reader) == b"9999B300OK"
    writer.close()


async def test_pipelined_requests_on_one_connection_all_get_answers(
    echo_server: HsmServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
    writer.write(b"".join(frame(b"%04dB20003X%02d" % (i, i)) for i in range(100)))
    replies = [await read_frame(reader) for _ in range(100)]
    assert replies == [b"%04dB300X%02d" % (i, i) for i in range(100)]
    writer.close()


async def test_a_frame_fed_one_byte_at_a_time_is_answered(echo_server: HsmServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
    for byte in frame(b"0042B20004PING"):
        writer.write(bytes((byte,)))
        await writer.drain()
    assert await read_frame(reader) == b"0042B300PING"
    writer.close()


async def test_empty_and_too_short_frames_get_no_reply(echo_server: HsmServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
    writer.write(frame(b"") + frame(b"12") + frame(b"0001B20001A"))
    assert await read_frame(reader) == b"0001B300A"
    writer.close()


async def test_an_oversized_frame_closes_only_that_connection(echo_server: HsmServer) -> None:
    bystander_reader, bystander = await asyncio.open_connection("127.0.0.1", echo_server.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
    writer.write(struct.pack(">H", 32 * 1024 + 1) + b"0001B2" + b"0" * 100)
    assert await asyncio.wait_for(reader.read(), 2.0) == b""  # closed by the server
    bystander.write(frame(b"0002B20002ME"))
    assert await read_frame(bystander_reader) == b"0002B300ME"
    bystander.close()


async def test_a_frame_of_exactly_32_kib_is_served(echo_server: HsmServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
    body = b"0001B2" + b"9999" + b"Z" * (32 * 1024 - 10)
    writer.write(frame(body))
    assert len(await read_frame(reader)) == 32 * 1024 - 2
    writer.close()


async def test_garbage_truncated_frames_and_vanishing_clients_do_not_stop_the_server(
    echo_server: HsmServer,
) -> None:
    for junk in (
        os.urandom(3000),
        b"\x00\x30" + b"0001B2",  # truncated: 48 bytes announced, 6 sent, then close
        frame(b"0001B20004PING")[:-2],  # disconnects mid-request
        frame(b"0001B20004PING"),  # disconnects before reading the reply
        b"\xff",
    ):
        _, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
        writer.write(junk)
        await writer.drain()
        writer.transport.abort()
        await still_serves(echo_server)


async def test_five_hundred_concurrent_connections_are_served(echo_server: HsmServer) -> None:
    async def one(i: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
        writer.write(frame(b"%04dB20004%04d" % (i, i)))
        reply = await read_frame(reader)
        writer.close()
        return reply

    replies = await asyncio.gather(*(one(i) for i in range(500)))
    assert replies == [b"%04dB300%04d" % (i, i) for i in range(500)]
    await still_serves(echo_server)


async def test_latency_holds_each_reply_for_the_configured_time() -> None:
    server = await start_hsm_server(
        host="127.0.0.1", port=0, metrics_port=0, latency_ms=80, engine=EchoEngine()
    )
    transport = TcpTransport("127.0.0.1", server.port, connections=1)
    client = HsmClient(transport)
    await transport.wait_connected(1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.gather(*(client.echo(str(i)) for i in range(10))) == [
        str(i) for i in range(10)
    ]
    assert loop.time() - started >= 0.075
    await client.close()
    await server.close()


def test_the_cps_cap_spaces_calls_after_the_burst() -> None:
    limiter = CpsLimiter(100.0, burst=5)
    releases = [limiter.release_at(10.0) for _ in range(25)]
    assert releases[:5] == [10.0] * 5
    assert releases[-1] == pytest.approx(10.0 + 20 / 100)
    assert limiter.release_at(20.0) == 20.0  # the bucket refilled meanwhile


async def test_the_cps_cap_delays_rather_than_refuses() -> None:
    server = await start_hsm_server(
        host="127.0.0.1", port=0, metrics_port=0, max_cps=100, engine=EchoEngine()
    )
    transport = TcpTransport("127.0.0.1", server.port, connections=2)
    client = HsmClient(transport)
    await transport.wait_connected(2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    words = [str(i) for i in range(40)]
    assert await asyncio.gather(*(client.echo(w) for w in words)) == words
    assert loop.time() - started >= (40 - 10) / 100 * 0.9
    await client.close()
    await server.close()


async def test_metrics_count_commands_and_connections() -> None:
    registry = CollectorRegistry()
    server = await start_hsm_server(
        host="127.0.0.1", port=0, metrics_port=0, engine=EchoEngine(), registry=registry
    )
    transport = TcpTransport("127.0.0.1", server.port, connections=2)
    client = HsmClient(transport)
    await transport.wait_connected(2)
    for _ in range(3):
        await client.echo()
    assert registry.get_sample_value("hsm_connections") == 2
    labels = {"command": "B2", "error": "00"}
    assert registry.get_sample_value("hsm_commands_total", labels) == 3
    assert registry.get_sample_value("hsm_command_seconds_count", {"command": "B2"}) == 3
    await client.close()
    await server.close()


def test_settings_layer_defaults_toml_environment_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hsm.toml"
    config.write_text('port = 1600\nlatency_ms = 5.0\nlog_format = "json"\n')
    monkeypatch.setenv("POSP_HSM_LATENCY_MS", "7")
    settings = load_settings(config, max_cps=250)
    assert (settings.port, settings.latency_ms, settings.max_cps) == (1600, 7.0, 250)
    assert settings.log_format == "json" and settings.header_length == 4
    with pytest.raises(ConfigError, match="port"):
        load_settings(None, port=70000)
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "missing.toml")


def test_hsm_sim_program_serves_and_stops_cleanly_on_sigterm() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hsm_sim.cli", "--port", str(port), "--metrics-port", "0"],
        stderr=subprocess.PIPE,
    )
    try:
        conn = None
        for _ in range(100):
            if proc.poll() is not None:
                break
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                break
            except OSError:
                time.sleep(0.05)
        if conn is None:
            pytest.fail("hsm-sim did not start listening")
        with conn:
            conn.sendall(frame(b"0001B20004PING"))
            assert conn.recv(100) == frame(b"0001B300PING")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert proc.stderr is not None and b"TEST LMK" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


async def real_engine_server(**params: object) -> HsmServer:
    from hsm_sim.engine import HsmEngine

    engine = HsmEngine(**params)  # type: ignore[arg-type]
    return await start_hsm_server(host="127.0.0.1", port=0, metrics_port=0, engine=engine)


async def test_the_reference_a0_example_byte_for_byte_over_tcp() -> None:
    """hsm-reference §7: A0 mode 1 with the generated ZPK fixed, on a raw socket."""
    zpk = bytes.fromhex("5B012F0E75970D5DB96EE65249F1D949")
    server = await real_engine_server(key_source=lambda n: zpk[:n])
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(frame(b"0001A01001UU0A26760BD07871026B6702C5F9BA25B3U"))
    assert await read_frame(reader) == (
        b"0001A100U61F612B4FD859AA204D0D2414F18C29FU631EAA5F7E6A6C9EB5A1701259A7AB54B3E1C8"
    )
    writer.close()
    await server.close()


async def test_unknown_commands_answer_68_and_the_connection_stays_usable() -> None:
    server = await real_engine_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(frame(b"0001ZQ1234") + frame(b"0002NC"))
    assert await read_frame(reader) == b"0001ZR68"
    assert (await read_frame(reader))[:8] == b"0002ND00"
    writer.close()
    await server.close()


async def test_a_client_with_the_wrong_header_length_gets_answers_not_a_crash() -> None:
    """With a 2-character header the server reads the wrong command code: it answers 68
    (or nothing for a frame too short), and keeps serving."""
    server = await real_engine_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(frame(b"01NC") + frame(b"01B20004PING"))
    # "01NC" is all header (no reply); "01B2" is taken as the header, "00" as the command.
    assert await read_frame(reader) == b"01B2" + b"01" + b"68"
    writer.close()
    await still_serves(server)
    await server.close()


def test_metrics_bound_their_labels_and_cache_only_bounded_ones() -> None:
    """Unknown commands count as ``other``, odd error fields as ``??``; only known
    (command, error) pairs are remembered, so junk cannot grow the cache."""
    from hsm_sim.metrics import HsmSimMetrics

    registry = CollectorRegistry()
    metrics = HsmSimMetrics(registry)
    for command, error in [(b"M8", b"00"), (b"M8", b"00"), (b"M8", b"01"), (b"Q1", b"68")]:
        metrics.observe(command, error, 0.0001)
    for junk in range(50):
        metrics.observe(b"%02d" % junk, b"\x00\xff", 0.0001)
    sample = registry.get_sample_value
    assert sample("hsm_commands_total", {"command": "M8", "error": "00"}) == 2
    assert sample("hsm_commands_total", {"command": "M8", "error": "01"}) == 1
    assert sample("hsm_commands_total", {"command": "other", "error": "68"}) == 1
    assert sample("hsm_commands_total", {"command": "other", "error": "??"}) == 50
    assert sample("hsm_command_seconds_count", {"command": "M8"}) == 3
    assert sample("hsm_command_seconds_count", {"command": "other"}) == 51
    assert len(metrics._by_reply) == 2
