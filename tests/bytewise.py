"""A fake transport for feeding a production asyncio Protocol by hand.

Each Protocol's ``data_received`` must cut frames the same way whatever the
segmentation: the tests feed it one byte at a time, as the framers are.
"""

from __future__ import annotations

import asyncio
from typing import Any


class FakeTransport(asyncio.Transport):
    """Records what the protocol writes; ``written`` is set at each write."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 40000)) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.written = asyncio.Event()
        self.closing = False
        self._peer = peer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.chunks.append(bytes(data))
        self.written.set()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._peer if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def feed_bytewise(protocol: asyncio.Protocol, data: bytes) -> None:
    """``data`` into ``protocol.data_received`` one byte per call."""
    for i in range(len(data)):
        protocol.data_received(data[i : i + 1])


async def read_written(transport: FakeTransport, min_bytes: int) -> bytes:
    """Wait (on the write itself) until at least ``min_bytes`` were written."""
    while len(transport.data) < min_bytes:
        transport.written.clear()
        async with asyncio.timeout(5):
            await transport.written.wait()
    return transport.data
