"""A stand-in command engine for transport tests: answers every command with
error 00 and echoes the fields back (the real engine is exercised elsewhere)."""

from __future__ import annotations


class EchoEngine:
    """``handle`` like HsmEngine's: header + response code + ``00`` + request fields."""

    def __init__(self, header_length: int = 4) -> None:
        self.header_length = header_length
        self.handled = 0

    def handle(self, request: bytes) -> bytes:
        hlen = self.header_length
        if len(request) < hlen + 2:
            return b""
        self.handled += 1
        command = request[hlen : hlen + 2]
        fields = request[hlen + 2 :]
        if command == b"B2":
            fields = fields[4:]
        return request[:hlen] + command[:1] + bytes((command[1] + 1,)) + b"00" + fields
