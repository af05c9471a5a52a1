"""Bad input, limits, deadlines, concurrency and shutdown over real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from posp.hsm.api import HsmClient
from posp.iso8583 import Message, decode_terminal
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.store import Store
from posp.switch import Switch
from tests.switch.conftest import MERCHANT_ID, TERMINAL_ID, switch_settings
from tests.switch.termclient import SimTerminal


class SlowHsm:
    """An HSM client whose every call first sleeps ``delay_s`` (deadline and drain tests);
    ``called`` is set as soon as a call is under way."""

    def __init__(self, inner: HsmClient, delay_s: float) -> None:
        self._inner = inner
        self.delay_s = delay_s
        self.called = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)

        async def slow(*args: Any, **kwargs: Any) -> Any:
            self.called.set()
            await asyncio.sleep(self.delay_s)
            return await attr(*args, **kwargs)

        return slow


async def start_switch(tmp_path: Path, store: Store, hsm: Any, **overrides: Any) -> Switch:
    running = Switch(switch_settings(tmp_path, **overrides), store=store, hsm=hsm)
    await running.start()
    return running


def echo(terminal: SimTerminal, trace: str | None = None) -> bytes:
    message = Message(
        "0820", {11: trace or terminal.next_trace(), 41: TERMINAL_ID, 60: "00000001301"}
    )
    return terminal.encode(message)


async def assert_closed_by_switch(reader: asyncio.StreamReader) -> None:
    async with asyncio.timeout(3):
        assert await reader.read() == b""


async def test_garbage_closes_only_that_connection(switch: Switch, terminal: SimTerminal) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", switch.port)
    writer.write(b"\x00\x05hello")
    await assert_closed_by_switch(reader)
    writer.close()
    _body, frame = await terminal.exchange(echo(terminal))
    assert frame.message[39] == "00"


async def test_oversized_length_closes_the_connection(
    switch: Switch, terminal: SimTerminal
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", switch.port)
    writer.write(b"\xff\xff" + b"\x60" * 100)
    await assert_closed_by_switch(reader)
    writer.close()
    _body, frame = await terminal.exchange(echo(terminal))
    assert frame.message[39] == "00"


async def test_truncated_frame_then_hangup_leaves_the_switch_serving(
    switch: Switch, terminal: SimTerminal
) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", switch.port)
    writer.write(b"\x00\x64" + echo(terminal)[:10])  # promises 100 bytes, sends 10
    await writer.drain()
    writer.close()
    _body, frame = await terminal.exchange(echo(terminal))
    assert frame.message[39] == "00"


async def test_frame_cut_inside_a_field_answers_30(switch: Switch, terminal: SimTerminal) -> None:
    body = echo(terminal)
    await terminal.send_body(body[:-2])  # F60 loses its last bytes
    frame = decode_terminal(await terminal.read_body())
    assert frame.message[39] == "30"


async def test_requests_on_one_connection_are_all_answered(
    switch: Switch, terminal: SimTerminal
) -> None:
    traces = [terminal.next_trace() for _ in range(20)]
    for trace in traces:
        await terminal.send_body(echo(terminal, trace))
    answered = {decode_terminal(await terminal.read_body()).message.text(11) for _ in traces}
    assert answered == set(traces)


async def _echo_once(port: int) -> str:
    client = SimTerminal(TERMINAL_ID, MERCHANT_ID)
    await client.connect(port)
    try:
        _body, frame = await client.exchange(echo(client), timeout_s=30)
        return frame.message.text(39)
    finally:
        await client.close()


async def test_1000_concurrent_connections_are_all_answered(switch: Switch) -> None:
    codes = await asyncio.gather(*(_echo_once(switch.port) for _ in range(1000)))
    assert codes == ["00"] * 1000


async def test_client_vanishing_mid_request_still_journals_and_serves_others(
    tmp_path: Path,
    store: Store,
    hsm: HsmClient,
    switch: Switch,
    terminal: SimTerminal,
) -> None:
    await terminal.sign_in()
    await switch.stop()
    slow_hsm = SlowHsm(hsm, 0.2)
    slow = await start_switch(tmp_path, store, slow_hsm)
    try:
        leaver = SimTerminal(TERMINAL_ID, MERCHANT_ID, keys=terminal.keys, trace=500)
        await leaver.connect(slow.port)
        await leaver.send_body(leaver.encode(leaver.purchase(), mac=True))
        await leaver.close()
        await slow_hsm.called.wait()  # the purchase is being served ...
        assert slow.server is not None
        if slow.server.tasks:  # ... and runs to its end although its terminal left
            await asyncio.wait(set(slow.server.tasks), timeout=10)
        entry = await store.find_by_trace(TERMINAL_ID, "000001", "000501")
        assert entry is not None and entry.response_code == "91"
        assert await _echo_once(slow.port) == "00"
    finally:
        await slow.stop()


async def test_connections_over_the_limit_are_closed_and_counted(
    tmp_path: Path, store: Store, hsm: HsmClient, switch: Switch
) -> None:
    await switch.stop()
    limited = await start_switch(tmp_path, store, hsm, limits={"max_connections": 1})
    try:
        first = SimTerminal(TERMINAL_ID, MERCHANT_ID)
        await first.connect(limited.port)
        _body, frame = await first.exchange(echo(first))
        assert frame.message[39] == "00"
        reader, writer = await asyncio.open_connection("127.0.0.1", limited.port)
        await assert_closed_by_switch(reader)
        writer.close()
        assert limited.registry.get_sample_value("posp_shed_total", {"reason": "connections"}) == 1
        await first.close()
    finally:
        await limited.stop()


async def test_requests_over_the_in_flight_limit_get_96_at_once(
    tmp_path: Path, store: Store, hsm: HsmClient, switch: Switch
) -> None:
    await switch.stop()
    limited = await start_switch(
        tmp_path, store, SlowHsm(hsm, 0.2), limits={"max_in_flight_per_connection": 1}
    )
    try:
        client = SimTerminal(TERMINAL_ID, MERCHANT_ID)
        await client.connect(limited.port)
        await client.send_body(client.encode(client.sign_in_message()))
        await client.send_body(echo(client))
        first = decode_terminal(await client.read_body(timeout_s=0.15)).message
        assert first.mti == "0830" and first[39] == "96"
        second = decode_terminal(await client.read_body()).message
        assert second.mti == "0810" and second[39] == "00"
        await client.close()
    finally:
        await limited.stop()


async def test_request_past_its_deadline_is_answered_96(
    tmp_path: Path, store: Store, hsm: HsmClient, switch: Switch
) -> None:
    await switch.stop()
    slow = await start_switch(
        tmp_path, store, SlowHsm(hsm, 1.0), limits={"request_deadline_s": 0.3}
    )
    try:
        client = SimTerminal(TERMINAL_ID, MERCHANT_ID)
        await client.connect(slow.port)
        _body, frame = await client.exchange(client.encode(client.sign_in_message()), 2.0)
        assert frame.message[39] == "96"
        await client.close()
    finally:
        await slow.stop()


async def test_idle_connection_is_closed(
    tmp_path: Path, store: Store, hsm: HsmClient, switch: Switch
) -> None:
    await switch.stop()
    idle = await start_switch(tmp_path, store, hsm, limits={"idle_timeout_s": 0.2})
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", idle.port)
        await assert_closed_by_switch(reader)
        writer.close()
    finally:
        await idle.stop()


async def test_shutdown_drains_requests_in_flight(
    tmp_path: Path, store: Store, hsm: HsmClient, switch: Switch
) -> None:
    await switch.stop()
    slow_hsm = SlowHsm(hsm, 0.1)
    slow = await start_switch(tmp_path, store, slow_hsm)
    client = SimTerminal(TERMINAL_ID, MERCHANT_ID)
    await client.connect(slow.port)
    await client.send_body(client.encode(client.sign_in_message()))
    await slow_hsm.called.wait()  # the sign-in is in flight (inside the HSM)
    stopping = asyncio.create_task(slow.stop())
    frame = decode_terminal(await client.read_body())
    assert frame.message[39] == "00"
    await stopping
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", slow.port)
    await client.close()


async def test_hsm_down_answers_96_within_the_deadline_and_recovers(
    tmp_path: Path, store: Store, switch: Switch, hsm_server: Any
) -> None:
    from hsm_sim.server import start_hsm_server

    await switch.stop()
    port = hsm_server.port
    url = f"tcp://127.0.0.1:{port}?connections=1&timeout_s=0.5"
    running = Switch(
        switch_settings(tmp_path, hsm_url=url, limits={"request_deadline_s": 2}), store=store
    )
    await running.start()
    client = SimTerminal(TERMINAL_ID, MERCHANT_ID)
    try:
        await client.connect(running.port)
        assert (await client.sign_in()).message[39] == "00"
        await hsm_server.close()
        started = asyncio.get_running_loop().time()
        frame = await client.sign_in()
        assert frame.message[39] == "96"
        assert asyncio.get_running_loop().time() - started < 2.5
        revived = await start_hsm_server(host="127.0.0.1", port=port, metrics_port=0)
        try:
            for _ in range(40):
                frame = await client.sign_in()
                if frame.message[39] == "00":
                    break
                await asyncio.sleep(0.1)
            assert frame.message[39] == "00"
        finally:
            await revived.close()
    finally:
        await client.close()
        await running.stop()


async def test_metrics_endpoint_exposes_request_counts(
    tmp_path: Path, store: Store, hsm: HsmClient, switch: Switch
) -> None:
    await switch.stop()
    running = await start_switch(tmp_path, store, hsm, metrics_enabled=True, metrics_port=0)
    try:
        assert await _echo_once(running.port) == "00"
        reader, writer = await asyncio.open_connection("127.0.0.1", running.metrics_port)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        text = (await reader.read()).decode()
        writer.close()
        assert 'posp_requests_total{response_code="00",txn_type="echo"} 1.0' in text
        assert "posp_hsm_seconds" in text or "posp_store_seconds" in text
    finally:
        await running.stop()


def test_switch_serves_under_uvloop(tmp_path: Path) -> None:
    """The production event loop (uvloop) runs the server: sign-in then purchase."""
    import uvloop

    from posp.store import open_store
    from tests.switch.conftest import provision

    async def scenario() -> list[str]:
        store = open_store(f"sqlite:///{tmp_path / 'uv.db'}", node_id="01")
        await store.open()
        hsm = inprocess_hsm_client()
        await provision(store, hsm)
        running = await start_switch(tmp_path, store, hsm)
        client = SimTerminal(TERMINAL_ID, MERCHANT_ID)
        try:
            await client.connect(running.port)
            signed = (await client.sign_in()).message.text(39)
            _body, frame = await client.exchange(client.encode(client.purchase(), mac=True))
            return [signed, frame.message.text(39)]
        finally:
            await client.close()
            await running.stop()
            await store.close()

    assert uvloop.run(scenario()) == ["00", "91"]
