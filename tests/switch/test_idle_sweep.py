"""The server's idle sweep (one timer for every connection, not one each):
it closes a connection with nothing in flight once no complete frame came for
``idle_timeout_s``, and spares a younger connection and one whose request is
still in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posp.hsm.api import HsmClient
from posp.server import TerminalConnection
from posp.store import Store
from posp.switch import Switch
from tests.bytewise import FakeTransport
from tests.switch.test_robustness import start_switch


class BrokenTransport(FakeTransport):
    def close(self) -> None:
        raise RuntimeError("transport broke")


def connection_on(switch: Switch) -> tuple[TerminalConnection, FakeTransport]:
    assert switch.server is not None
    connection = TerminalConnection(switch.server)
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport


async def test_the_sweep_closes_only_what_was_idle_for_the_timeout(switch: Switch) -> None:
    assert switch.server is not None
    server = switch.server
    timeout_s = server.limits.idle_timeout_s
    idle, idle_transport = connection_on(switch)
    young, young_transport = connection_on(switch)
    busy, busy_transport = connection_on(switch)
    # Round clock values: ``(t + timeout) - t`` can come out a hair under the
    # timeout for an arbitrary float t, which would leave ``idle`` unswept.
    idle.last_activity_s = 1_000.0
    now_s = idle.last_activity_s + timeout_s
    young.last_activity_s = now_s - timeout_s / 2
    busy.last_activity_s = idle.last_activity_s
    busy._in_flight = 1  # a request still being answered
    try:
        for connection in (idle, young, busy):
            connection.close_if_idle(now_s, timeout_s)
        assert (idle_transport.closing, young_transport.closing, busy_transport.closing) == (
            True,
            False,
            False,
        )
        assert idle not in server.connections
        assert young in server.connections and busy in server.connections
    finally:
        busy._in_flight = 0
        for connection in (young, busy):
            connection.connection_lost(None)


async def test_a_connection_has_no_timer_of_its_own(switch: Switch) -> None:
    """Idle connections cost only their slotted protocol object (no dict, no
    timer handle, no context): what bench_connections measures per connection."""
    connection, _transport = connection_on(switch)
    try:
        assert not hasattr(connection, "__dict__")
        assert switch.server is not None and switch.server._idle_sweep is not None
    finally:
        connection.connection_lost(None)


async def test_the_sweep_reschedules_itself_and_stop_cancels_it(
    tmp_path: Path, store: Store, hsm: HsmClient, switch: Switch
) -> None:
    """One sweep closes what is idle, survives a connection whose close fails,
    schedules the next one a tenth of the timeout later; ``stop`` cancels it."""
    await switch.stop()
    running = await start_switch(tmp_path, store, hsm, limits={"idle_timeout_s": 300})
    server = running.server
    assert server is not None
    try:
        broken = TerminalConnection(server)
        broken.connection_made(BrokenTransport())
        idle, idle_transport = connection_on(running)
        fresh, fresh_transport = connection_on(running)
        loop = asyncio.get_running_loop()
        idle.last_activity_s = broken.last_activity_s = loop.time() - 301
        first = server._idle_sweep
        server._sweep_idle()
        assert idle_transport.closing and not fresh_transport.closing
        assert server._idle_sweep is not None and server._idle_sweep is not first
        assert server._idle_sweep.when() - loop.time() == pytest.approx(30, abs=1)
        for connection in (broken, fresh):
            connection.connection_lost(None)
    finally:
        await running.stop()
    assert server._idle_sweep is None
