"""Log context of a terminal connection: every request's lines carry the peer
(bound in the request's own context, not kept per connection), and a
connection closed for a framing error says which peer it was."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from structlog.testing import capture_logs

from posp.pipeline.engine import Reply
from posp.server import TerminalConnection
from posp.switch import Switch
from tests.bytewise import FakeTransport

PEER = ("10.1.2.3", 4321)


async def test_each_request_runs_with_the_peer_bound(
    switch: Switch, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert switch.server is not None
    seen: list[dict[str, object]] = []
    answered = asyncio.Event()

    async def handle(body: bytes) -> Reply:
        seen.append(structlog.contextvars.get_contextvars())
        answered.set()
        return Reply(b"answer")

    monkeypatch.setattr(switch.server.pipeline, "handle", handle)
    connection = TerminalConnection(switch.server)
    transport = FakeTransport(PEER)
    connection.connection_made(transport)
    try:
        connection.data_received(b"\x00\x03abc")
        await answered.wait()
        await transport.written.wait()
        assert seen == [{"peer": "10.1.2.3:4321"}]
        assert structlog.contextvars.get_contextvars().get("peer") is None  # not leaked
        assert transport.data == b"\x00\x06answer"
    finally:
        connection.connection_lost(None)


async def test_a_framing_error_is_logged_with_the_peer(switch: Switch) -> None:
    assert switch.server is not None
    connection = TerminalConnection(switch.server)
    transport = FakeTransport(PEER)
    connection.connection_made(transport)
    limit = switch.server.limits.max_frame_bytes
    with capture_logs() as logs:
        connection.data_received((limit + 1).to_bytes(2, "big"))
    assert transport.closing
    [line] = [entry for entry in logs if "framing error" in str(entry["event"])]
    assert line["peer"] == "10.1.2.3:4321"
