"""Re-encode a frame a simulated terminal built with some fields changed (and a
fresh MAC), to send requests the machine would not build (wrong amount, RRN ...)."""

from __future__ import annotations

import asyncio

from posp.framing import frame_binary
from posp.iso8583 import TerminalFrame, decode_terminal
from posp.iso8583.message import FieldValue
from terminals.machine import TerminalMachine


def tampered(
    machine: TerminalMachine,
    frame: bytes,
    changes: dict[int, FieldValue],
    drop: tuple[int, ...] = (),
) -> bytes:
    """``frame`` (with LEN) with ``changes`` applied, ``drop`` removed, F64 recomputed."""
    message = decode_terminal(frame[2:]).message
    message.fields.update(changes)
    for number in drop:
        message.fields.pop(number, None)
    message.fields.pop(64, None)
    return frame_binary(machine.encode(message, mac=True))


async def send_raw(port: int, frame: bytes, timeout_s: float = 5.0) -> TerminalFrame:
    """Send one frame on a new connection and return the decoded answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame)
        async with asyncio.timeout(timeout_s):
            length = int.from_bytes(await reader.readexactly(2), "big")
            return decode_terminal(await reader.readexactly(length))
    finally:
        writer.close()
