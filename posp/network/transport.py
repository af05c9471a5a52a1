"""A thin asyncio Protocol for network-link frames (4-byte ASCII length prefix).

Used by both ends: the switch's :class:`~posp.network.link.NetworkLink` and the
network simulator's server.  All parsing is in the pure framer and codec; this class
only moves bytes.

Invariants:
* A framing error (bad length prefix, frame over the maximum) closes the
  connection — the stream cannot be resynchronised; a frame that does not decode
  is handed to ``on_bad_frame`` and the connection keeps serving.
* Frames sent during one event-loop turn leave in one ``transport.write`` (in
  order), so a busy link costs one system call per turn, not one per message;
  ``close()`` writes what is queued before closing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from posp.errors import DecodeError, FramingError
from posp.framing import AsciiLengthFramer, frame_ascii
from posp.iso8583 import NetworkFrame, decode_network, encode_network


class FrameProtocol(asyncio.Protocol):
    """Delivers decoded frames to ``on_frame``; ``closed`` is set when the link drops."""

    def __init__(
        self,
        on_frame: Callable[[FrameProtocol, NetworkFrame], None],
        on_bad_frame: Callable[[FrameProtocol, DecodeError], None],
        *,
        max_frame_bytes: int = 8192,
    ) -> None:
        self._on_frame = on_frame
        self._on_bad_frame = on_bad_frame
        self._framer = AsciiLengthFramer(max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.Event()
        self.peer = ""
        self.last_activity = 0.0  # loop time of the last frame received (idle detection)
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.last_activity = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        self.last_activity = asyncio.get_running_loop().time()
        try:
            bodies = self._framer.feed(data)
        except FramingError:
            self.close()
            return
        for body in bodies:
            if not body:
                continue
            try:
                frame = decode_network(body)
            except DecodeError as exc:
                self._on_bad_frame(self, exc)
                continue
            self._on_frame(self, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._out.clear()
        self.closed.set()

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, frame: NetworkFrame) -> bool:
        """Encode and write one frame; False when the connection is already gone.
        EncodeError propagates (a message we built does not fit its spec)."""
        return self.send_body(encode_network(frame))

    def send_body(self, body: bytes) -> bool:
        """Write one encoded frame body; False when the connection is already gone."""
        data = frame_ascii(body)
        if self.transport is None or self.transport.is_closing():
            return False
        out = self._out
        out.append(data)
        if len(out) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return True

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        self._out = []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()
