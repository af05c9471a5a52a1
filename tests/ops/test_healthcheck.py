"""posp-healthcheck against the real programs (in-process, port 0) and against
servers that answer wrongly or not at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posp.healthcheck import (
    Unhealthy,
    check_hsm,
    check_issuer,
    check_ready,
    check_switch,
    main,
    target_of_pid1,
    terminal_echo_request,
)
from posp.iso8583 import decode_terminal

LOCAL = "127.0.0.1"
ACCEPT_DEFAULT = frozenset({"00", "97"})


async def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    server = await asyncio.start_server(lambda r, w: None, LOCAL, 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def fake_server(reply: bytes | None) -> asyncio.Server:
    """Accepts, reads one chunk, sends ``reply`` (None: stays silent), then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        if reply is None:
            await asyncio.sleep(5)
        else:
            writer.write(reply)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, LOCAL, 0)


@pytest.fixture
async def switch_ports(tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    from posp.settings import load_settings
    from posp.switch import Switch

    settings = load_settings(
        None, terminal_port=0, metrics_port=0, network_enabled=False, data_dir=tmp_path
    )
    switch = Switch(settings)
    await switch.start()
    try:
        yield switch.port, switch.metrics_port
    finally:
        await switch.stop()


def test_echo_request_is_a_terminal_link_0820_301() -> None:
    """The health echo decodes as a terminal echo: 0820, F60 network code 301."""
    body = terminal_echo_request("12345678")
    assert int.from_bytes(body[:2], "big") == len(body) - 2
    frame = decode_terminal(body[2:])
    assert frame.message.mti == "0820"
    assert frame.message[41] == "12345678"
    assert str(frame.message[60]).endswith("301")


async def test_switch_check_passes_on_an_echo_answer_and_fails_on_a_stricter_accept(
    switch_ports: tuple[int, int],
) -> None:
    """An unregistered health terminal is answered 97: healthy by default, not with 00 only."""
    switch_port = switch_ports[0]
    line = await asyncio.to_thread(
        check_switch, LOCAL, switch_port, "00000000", ACCEPT_DEFAULT, 3.0
    )
    assert "39=97" in line
    with pytest.raises(Unhealthy, match="39='97'"):
        await asyncio.to_thread(
            check_switch, LOCAL, switch_port, "00000000", frozenset({"00"}), 3.0
        )


async def test_hsm_check_passes_against_hsm_sim() -> None:
    from hsm_sim.server import start_hsm_server

    server = await start_hsm_server(port=0, metrics_port=0)
    try:
        assert "B300" in await asyncio.to_thread(check_hsm, LOCAL, server.port, 4, 3.0)
        with pytest.raises(Unhealthy):  # wrong header length: the answer does not match
            await asyncio.to_thread(check_hsm, LOCAL, server.port, 6, 1.0)
    finally:
        await server.close()


async def test_issuer_check_passes_against_issuer_sim() -> None:
    from issuer_sim.app import start_issuer
    from issuer_sim.settings import load_settings

    server = await start_issuer(load_settings(None, port=0))
    try:
        assert "39=00" in await asyncio.to_thread(check_issuer, LOCAL, server.port, 3.0)
    finally:
        await server.close()


async def test_refused_silent_closed_and_garbage_servers_are_unhealthy() -> None:
    """Every wrong way to answer is a clear Unhealthy, never an exception escaping."""
    with pytest.raises(Unhealthy, match="refused"):
        await asyncio.to_thread(check_hsm, LOCAL, await closed_port(), 4, 1.0)
    cases = [
        (None, "no answer"),
        (b"", "closed the connection"),
        (b"\x00\x05hello", "did not decode"),
    ]
    for reply, message in cases:
        server = await fake_server(reply)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(Unhealthy, match=message):
                await asyncio.to_thread(check_switch, LOCAL, port, "00000000", ACCEPT_DEFAULT, 0.5)
        finally:
            server.close()


@pytest.mark.parametrize(
    ("argv", "target"),
    [
        (["/opt/venv/bin/python", "/opt/venv/bin/posp", "serve"], "switch"),
        (["/opt/venv/bin/python", "/opt/venv/bin/hsm-sim", "--config", "x"], "hsm"),
        (["python", "/usr/bin/issuer-sim", "serve", "--port", "1"], "issuer"),
        (["python", "/opt/venv/bin/posp-fleet", "--fleet-file", "f"], "none"),
        (["python", "/opt/venv/bin/posp", "terminal", "list"], "none"),
    ],
)
def test_auto_target_follows_pid1(tmp_path: Path, argv: list[str], target: str) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    assert target_of_pid1(cmdline) == target


def test_auto_target_without_proc_is_none(tmp_path: Path) -> None:
    assert target_of_pid1(tmp_path / "missing") == "none"


async def test_main_exits_1_when_unhealthy_and_0_when_healthy(
    switch_ports: tuple[int, int],
) -> None:
    """Echo answered and /ready 200: exit 0; nothing listening: exit 1."""
    port = await closed_port()
    with pytest.raises(SystemExit) as failed:
        await asyncio.to_thread(main, ["--timeout-s", "1", "switch", "--port", str(port)])
    assert failed.value.code == 1
    terminal, metrics = switch_ports
    argv = ["switch", "--port", str(terminal), "--metrics-port", str(metrics)]
    with pytest.raises(SystemExit) as passed:
        await asyncio.to_thread(main, argv)
    assert passed.value.code == 0


async def test_switch_check_fails_naming_what_readiness_reports_down(
    switch_ports: tuple[int, int],
) -> None:
    """The echo is answered but /ready says 503: unhealthy, naming the part that is down."""

    async def not_ready(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        body = b'{"ready": false, "down": ["store"]}'
        writer.write(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        writer.close()

    fake = await asyncio.start_server(not_ready, LOCAL, 0)
    fake_port = fake.sockets[0].getsockname()[1]
    try:
        with pytest.raises(Unhealthy, match="down: store"):
            await asyncio.to_thread(check_ready, LOCAL, fake_port, 2.0)
        argv = ["switch", "--port", str(switch_ports[0]), "--metrics-port", str(fake_port)]
        with pytest.raises(SystemExit) as failed:
            await asyncio.to_thread(main, argv)
        assert failed.value.code == 1
    finally:
        fake.close()


def test_no_target_is_a_usage_error_not_healthy(capsys: pytest.CaptureFixture[str]) -> None:
    """posp-healthcheck with no target exits 2 naming the targets (was: exit 0)."""
    with pytest.raises(SystemExit) as usage:
        main([])
    assert usage.value.code == 2
    assert "switch, hsm, issuer" in capsys.readouterr().err
