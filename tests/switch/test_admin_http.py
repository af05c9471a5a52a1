"""The switch's metrics/admin port: /metrics only on its path, process and build
metrics, counters pre-initialised to 0, /ready naming what is down, /live, and a busy
port reported by number."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from posp.errors import ConfigError
from posp.hsm.api import HsmClient
from posp.readiness import check_readiness
from posp.store import Store
from posp.switch import Switch
from tests.switch.conftest import switch_settings


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    raw = (await reader.read()).decode()
    writer.close()
    head, _, body = raw.partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


@dataclass
class FakeLink:
    signed_on: bool

    def when_up(self, callback: object) -> None:
        """The test flips ``signed_on`` itself; the SAF forwarder polls."""


async def _started(tmp_path: Path, store: Store, hsm: HsmClient, link: object) -> Switch:
    settings = switch_settings(tmp_path, metrics_enabled=True, metrics_port=0)
    running = Switch(settings, store=store, hsm=hsm, link=link)
    await running.start()
    return running


async def test_metrics_only_on_their_path_with_process_build_and_zero_counters(
    tmp_path: Path, store: Store, hsm: HsmClient
) -> None:
    """/metrics has process_*, posp_build_info and 0-valued labelled counters; /x is 404."""
    running = await _started(tmp_path, store, hsm, None)
    try:
        status, text = await http_get(running.metrics_port, "/metrics")
        assert status == 200
        assert "process_resident_memory_bytes" in text
        assert "process_open_fds" in text and "process_cpu_seconds_total" in text
        assert 'posp_build_info{python="' in text
        assert 'posp_shed_total{reason="deadline"} 0.0' in text
        assert 'posp_frames_rejected_total{reason="idle"} 0.0' in text
        assert 'posp_requests_total{response_code="00",txn_type="purchase"} 0' in text
        assert (await http_get(running.metrics_port, "/"))[0] == 404
        assert (await http_get(running.metrics_port, "/metricsx"))[0] == 404
    finally:
        await running.stop()


async def test_ready_names_the_network_link_when_it_is_down(
    tmp_path: Path, store: Store, hsm: HsmClient
) -> None:
    """/ready: 200 when store, HSM and link are up; 503 naming "network" when the link
    is not signed on; /live stays 200."""
    link = FakeLink(signed_on=True)
    running = await _started(tmp_path, store, hsm, link)
    try:
        status, body = await http_get(running.metrics_port, "/ready")
        assert (status, json.loads(body)) == (200, {"ready": True, "down": []})
        link.signed_on = False
        status, body = await http_get(running.metrics_port, "/ready")
        assert (status, json.loads(body)) == (503, {"ready": False, "down": ["network"]})
        assert (await http_get(running.metrics_port, "/live"))[0] == 200
    finally:
        await running.stop()


async def test_readiness_counts_a_failing_or_hanging_probe_as_down() -> None:
    """A probe that raises or outlives its deadline is down; the others are not named."""

    async def up() -> bool:
        return True

    async def broken() -> bool:
        raise OSError("connection refused")

    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    probes = {"store": broken, "hsm": up, "network": hangs}
    readiness = await check_readiness(probes, timeout_s=0.05)
    assert readiness.down == ("store", "network")
    assert readiness.answer()[0] == 503


async def test_busy_metrics_port_is_named(tmp_path: Path, store: Store, hsm: HsmClient) -> None:
    """A metrics port already taken: ConfigError naming host:port, not a bare OSError."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = switch_settings(tmp_path, metrics_enabled=True, metrics_port=port)
        running = Switch(settings, store=store, hsm=hsm)
        with pytest.raises(ConfigError, match=f"metrics port 127.0.0.1:{port}"):
            await running.start()
        await running.stop()


async def _wait_ready_status(port: int, status: int) -> dict[str, object]:
    """/ready's body once it answers ``status`` (the probes see a change at once, the
    HSM client notices a dropped connection on its next read)."""
    for _ in range(100):
        code, body = await http_get(port, "/ready")
        if code == status:
            answer: dict[str, object] = json.loads(body)
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"/ready never answered {status}")


async def test_ready_names_the_store_when_it_is_closed(
    tmp_path: Path, store: Store, hsm: HsmClient
) -> None:
    """The store stops answering (closed under the switch): /ready 503 naming "store"."""
    running = await _started(tmp_path, store, hsm, None)
    try:
        assert (await http_get(running.metrics_port, "/ready"))[0] == 200
        await store.close()
        answer = await _wait_ready_status(running.metrics_port, 503)
        assert answer == {"ready": False, "down": ["store"]}
    finally:
        await running.stop()


async def test_ready_names_a_tcp_hsm_that_went_away(tmp_path: Path, store: Store) -> None:
    """A switch on a TCP HSM: ready while hsm-sim runs, 503 naming "hsm" once it stops."""
    from hsm_sim.server import start_hsm_server
    from posp.hsm import open_hsm_client

    hsm_server = await start_hsm_server(port=0, metrics_port=0)
    client = open_hsm_client(f"tcp://127.0.0.1:{hsm_server.port}?timeout_s=1")
    await client.start()
    running = await _started(tmp_path, store, client, None)
    try:
        assert (await _wait_ready_status(running.metrics_port, 200))["ready"] is True
        await hsm_server.close()
        answer = await _wait_ready_status(running.metrics_port, 503)
        assert answer == {"ready": False, "down": ["hsm"]}
    finally:
        await running.stop()
        await client.close()
