"""A small terminal for the switch tests: builds frames, MACs with the clear
MAK it unwrapped from F62 (posp.crypto), talks over a real socket."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

from posp.crypto.keyblock import ClearWorkingKeys, unwrap_f62
from posp.crypto.mac import cup_ecb_mac
from posp.framing import frame_binary
from posp.iso8583 import Message, TerminalFrame, decode_terminal, encode_terminal, terminal_mab

TPDU = bytes.fromhex("6000010002")
HEADER = "603100000000"
TEST_PAN = "6225880000000001"
TEST_TMK_HEX = "0123456789ABCDEFFEDCBA9876543210"
# A TMK with odd parity: the HSM refuses keys without it.
TEST_TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


@dataclass
class SimTerminal:
    """One terminal with its own connection, trace counter and working keys."""

    terminal_id: str
    merchant_id: str
    tmk: bytes = TEST_TMK
    batch: str = "000001"
    trace: int = 0
    keys: ClearWorkingKeys | None = None
    reader: asyncio.StreamReader | None = field(default=None, repr=False)
    writer: asyncio.StreamWriter | None = field(default=None, repr=False)

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    def next_trace(self) -> str:
        self.trace = self.trace % 999999 + 1
        return f"{self.trace:06d}"

    async def send_body(self, body: bytes) -> None:
        assert self.writer is not None
        self.writer.write(frame_binary(body))
        await self.writer.drain()

    async def read_body(self, timeout_s: float = 5.0) -> bytes:
        assert self.reader is not None
        async with asyncio.timeout(timeout_s):
            (length,) = struct.unpack(">H", await self.reader.readexactly(2))
            return await self.reader.readexactly(length)

    async def exchange(self, body: bytes, timeout_s: float = 5.0) -> tuple[bytes, TerminalFrame]:
        await self.send_body(body)
        answer = await self.read_body(timeout_s)
        return answer, decode_terminal(answer)

    def encode(self, message: Message, *, mac: bool = False) -> bytes:
        frame = TerminalFrame(TPDU, HEADER, message)
        if not mac:
            return encode_terminal(frame)
        assert self.keys is not None
        message[64] = b"00000000"
        body = encode_terminal(frame)
        return body[:-8] + cup_ecb_mac(self.keys.mak, terminal_mab(body))

    def sign_in_message(self, net_code: str = "001") -> Message:
        return Message(
            "0800",
            {
                11: self.next_trace(),
                41: self.terminal_id,
                42: self.merchant_id,
                60: "00" + self.batch + net_code,
                63: "001",
            },
        )

    async def sign_in(self, net_code: str = "001") -> TerminalFrame:
        _body, frame = await self.exchange(self.encode(self.sign_in_message(net_code)))
        answer = frame.message
        if answer.get(39) == "00":
            self.keys = unwrap_f62(net_code, answer[62], self.tmk)  # type: ignore[arg-type]
            self.batch = answer.text(60)[2:8]
        return frame

    def purchase(self, amount_minor: int = 1000, pan: str = TEST_PAN) -> Message:
        return Message(
            "0200",
            {
                2: pan,
                3: "000000",
                4: f"{amount_minor:012d}",
                11: self.next_trace(),
                22: "021",
                25: "00",
                41: self.terminal_id,
                42: self.merchant_id,
                49: "156",
                60: "22" + self.batch + "000",
            },
        )

    def verify_answer_mac(self, body: bytes) -> bool:
        assert self.keys is not None
        return cup_ecb_mac(self.keys.mak, terminal_mab(body)) == body[-8:]
