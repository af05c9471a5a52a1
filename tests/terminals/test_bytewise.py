"""The simulated terminal's connection Protocol cuts the switch's answers fed one
byte at a time exactly as whole ones, with or without a read pending."""

from __future__ import annotations

import asyncio

from terminals import session as session_module
from tests.bytewise import FakeTransport, feed_bytewise


def framed(body: bytes) -> bytes:
    return len(body).to_bytes(2, "big") + body


async def test_answers_fed_one_byte_at_a_time_reach_the_pending_read_in_order() -> None:
    protocol = session_module._FrameProtocol(asyncio.get_running_loop())
    protocol.connection_made(FakeTransport())
    pending = protocol.read()
    feed_bytewise(protocol, framed(b"first answer") + framed(b"second"))
    assert await pending == b"first answer"
    assert await protocol.read() == b"second"
    assert not protocol.unread


async def test_bytes_with_no_read_pending_wait_for_the_next_read() -> None:
    protocol = session_module._FrameProtocol(asyncio.get_running_loop())
    protocol.connection_made(FakeTransport())
    feed_bytewise(protocol, framed(b"early") + framed(b"par")[:3])
    assert protocol.unread
    assert await protocol.read() == b"early"
    pending = protocol.read()
    feed_bytewise(protocol, framed(b"par")[3:])
    assert await pending == b"par"
