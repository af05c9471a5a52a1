"""Request field reader and the command fault signal of the HSM engine.

Invariants: the reader never raises anything but ``HsmFault``; every fault
carries a two-digit payShield error code and nothing else (no field values).
"""

from __future__ import annotations

TRAILER_DELIMITER = 0x19
HEX_BYTES = frozenset(b"0123456789ABCDEFabcdef")
_DIGIT_BYTES = frozenset(b"0123456789")


class HsmFault(Exception):
    """A command failed with a payShield error code (``15``, ``10`` …)."""

    __slots__ = ("code",)

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Reader:
    """Sequential reader over a command's fields (the bytes after the command code).

    ``end`` is where the fields stop: the whole body, or the position of the
    ``0x19`` trailer delimiter once a command has declared its fields ASCII
    (``limit_to_trailer``).  Binary M-series messages are read by length so a
    0x19 inside the data is never mistaken for the delimiter.
    """

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def limit_to_trailer(self) -> None:
        """Stop the fields at the first 0x19 (for commands whose fields are all ASCII)."""
        at = self.data.find(TRAILER_DELIMITER, self.pos)
        if at >= 0:
            self.end = at

    def remaining(self) -> int:
        return self.end - self.pos

    def peek(self) -> int:
        """The next byte, or -1 at the end of the fields."""
        return self.data[self.pos] if self.pos < self.end else -1

    def raw(self, n: int, code: str = "15") -> bytes:
        """The next ``n`` bytes; fault ``code`` when fewer remain."""
        start = self.pos
        stop = start + n
        if n < 0 or stop > self.end:
            raise HsmFault(code)
        self.pos = stop
        return self.data[start:stop]

    def text(self, n: int, code: str = "15") -> str:
        """The next ``n`` characters as ASCII."""
        chunk = self.raw(n, code)
        if not chunk.isascii():
            raise HsmFault(code)
        return chunk.decode("ascii")

    def hex(self, n: int, code: str = "15") -> str:
        """The next ``n`` hex characters, upper-cased."""
        chunk = self.raw(n, code)
        if not HEX_BYTES.issuperset(chunk):
            raise HsmFault(code)
        return chunk.decode("ascii").upper()

    def digits(self, n: int, code: str = "15") -> str:
        """The next ``n`` decimal digits."""
        chunk = self.raw(n, code)
        if not _DIGIT_BYTES.issuperset(chunk):
            raise HsmFault(code)
        return chunk.decode("ascii")

    def optional(self, delimiter: bytes) -> bool:
        """Consume ``delimiter`` if it comes next; say whether it did."""
        if self.data.startswith(delimiter, self.pos) and self.pos < self.end:
            self.pos += len(delimiter)
            return True
        return False

    def finish(self) -> None:
        """Fault 15 when anything but ``0x19`` + trailer is left after the last field."""
        at_trailer = self.pos < self.end and self.data[self.pos] == TRAILER_DELIMITER
        if self.end == len(self.data) and at_trailer:
            self.end = self.pos
        if self.pos != self.end:
            raise HsmFault("15")

    def trailer(self) -> bytes:
        """``0x19`` + trailer after the fields, or b"" (valid after ``finish``)."""
        return self.data[self.end :]

    def trailer_after_fault(self) -> bytes:
        """Best guess at the trailer when parsing stopped early: the last 0x19 and what
        follows, if that is short enough to be a trailer (at most 32 characters)."""
        if self.end < len(self.data):
            return self.data[self.end :]
        at = self.data.rfind(TRAILER_DELIMITER)
        if at >= 0 and len(self.data) - at <= 33:
            return self.data[at:]
        return b""
