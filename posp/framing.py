"""Pure length-prefix framers: bytes in, complete frame bodies out.

``BinaryLengthFramer`` reads a 2-byte big-endian length (terminal link, HSM
link); ``AsciiLengthFramer`` reads 4 ASCII digits (network link).

Invariants: the frames produced do not depend on how the input was chunked;
a length over ``max_frame_bytes`` raises ``FramingError`` before any of the
frame is buffered; after a ``FramingError`` the stream is unusable (the
caller closes the connection), so the framer keeps refusing input.
A zero-length frame is returned as ``b""``.
"""

from __future__ import annotations

from typing import Final

from posp.errors import EncodeError, FramingError

MAX_FRAME_DEFAULT: Final = 8192
_BINARY_PREFIX_BYTES: Final = 2
_ASCII_PREFIX_BYTES: Final = 4


class _LengthFramer:
    """Shared buffering; subclasses say how to read the length prefix.  Slotted:
    the switch keeps one per idle terminal connection."""

    __slots__ = ("_broken", "_buffer", "max_frame_bytes")
    prefix_bytes: int = 0

    def __init__(self, max_frame_bytes: int = MAX_FRAME_DEFAULT) -> None:
        self.max_frame_bytes = max_frame_bytes
        # b"" (shared, nothing allocated) between frames; a bytearray only while a
        # frame is incomplete.
        self._buffer: bytes | bytearray = b""
        self._broken = False

    @property
    def buffered(self) -> int:
        """Bytes held waiting for more input."""
        return len(self._buffer)

    def _length(self, prefix: bytes) -> int:
        raise NotImplementedError

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return the bodies completed by it (prefixes stripped)."""
        if self._broken:
            raise FramingError("framer already failed; the stream must be closed")
        buf = self._buffer
        if buf:
            assert isinstance(buf, bytearray)
            buf += data
        else:
            buf = data  # the usual case: parsed where it lies, not copied
        frames: list[bytes] = []
        pos = 0
        width = self.prefix_bytes
        total = len(buf)
        while total - pos >= width:
            try:
                size = self._length(bytes(buf[pos : pos + width]))
            except FramingError:
                self._broken = True
                raise
            if size > self.max_frame_bytes:
                self._broken = True
                raise FramingError(f"frame of {size} bytes exceeds {self.max_frame_bytes}")
            end = pos + width + size
            if end > total:
                break
            frames.append(bytes(buf[pos + width : end]))
            pos = end
        if pos == total:
            self._buffer = b""
        elif buf is data:
            self._buffer = bytearray(data[pos:])
        else:
            assert isinstance(buf, bytearray)
            if pos:
                del buf[:pos]
            self._buffer = buf
        return frames


class BinaryLengthFramer(_LengthFramer):
    """2-byte big-endian length prefix (terminal link, HSM link)."""

    __slots__ = ()
    prefix_bytes = _BINARY_PREFIX_BYTES

    def _length(self, prefix: bytes) -> int:
        return int.from_bytes(prefix, "big")


class AsciiLengthFramer(_LengthFramer):
    """4 ASCII digits length prefix (network link)."""

    __slots__ = ()
    prefix_bytes = _ASCII_PREFIX_BYTES

    def _length(self, prefix: bytes) -> int:
        if not prefix.isdigit():
            raise FramingError("length prefix is not 4 ASCII digits")
        return int(prefix)


def frame_binary(body: bytes) -> bytes:
    """``body`` prefixed with its 2-byte big-endian length; EncodeError over 65535."""
    if len(body) > 0xFFFF:
        raise EncodeError(f"frame of {len(body)} bytes exceeds 65535")
    return len(body).to_bytes(_BINARY_PREFIX_BYTES, "big") + body


def frame_ascii(body: bytes) -> bytes:
    """``body`` prefixed with its length as 4 ASCII digits; EncodeError over 9999."""
    if len(body) > 9999:
        raise EncodeError(f"frame of {len(body)} bytes exceeds 9999")
    return b"%04d" % len(body) + body
