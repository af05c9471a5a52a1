"""A tiny stand-in for the switch, for terminal tests: a pure responder plus
an asyncio server on 127.0.0.1:0.  It answers sign-ins with a key block made
by ``wrap_f62`` and financial requests with MAC'd answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from posp.crypto.keyblock import ClearWorkingKeys, wrap_f62
from posp.crypto.mac import cup_ecb_mac
from posp.framing import BinaryLengthFramer, frame_binary
from posp.iso8583 import (
    TerminalFrame,
    decode_terminal,
    encode_terminal,
    reply_tpdu,
    response_header,
    terminal_mab,
)
from posp.iso8583.fields import Field60, SettlementF48, SettlementTotalsF48
from posp.iso8583.message import FieldValue, Message

TMK = bytes.fromhex("11111111111111112222222222222222")
KEYS = {
    "001": ClearWorkingKeys(
        bytes.fromhex("0123456789ABCDEF"), bytes.fromhex("5CBE7E38A146FD5C"), None
    ),
    "003": ClearWorkingKeys(
        bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), bytes.fromhex("5CBE7E38A146FD5C"), None
    ),
    "004": ClearWorkingKeys(
        bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
        bytes.fromhex("5CBE7E38A146FD5C"),
        bytes.fromhex("1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A"),
    ),
}
ECHOED = (2, 3, 4, 11, 25, 41, 42, 48, 49, 60)
MACED = {"0110", "0210", "0230", "0410"}


@dataclass
class FakeSwitch:
    """Answers like a switch; knobs let a test provoke each terminal path."""

    tmk: bytes = TMK
    batch: str = "000042"
    card_org: str = "CUP"
    code: str = "00"
    processing: str = "0"
    settlement_result: str = "1"
    bad_mac: bool = False
    rrn_counter: int = 0
    seen: list[Message] = field(default_factory=list)
    override: Callable[[Message], str | None] | None = None

    def answer(self, body: bytes) -> bytes | None:
        """Response body (no LEN) for a request body; None = drop it."""
        request = decode_terminal(body)
        msg = request.message
        self.seen.append(msg)
        code = self.override(msg) if self.override is not None else self.code
        if code is None:
            return None
        fields: dict[int, FieldValue] = {n: msg[n] for n in ECHOED if n in msg}
        self.rrn_counter += 1
        fields.update(
            {
                12: "101500",
                13: "0612",
                15: "0612",
                32: "12345678",
                37: f"{self.rrn_counter:012d}",
                39: code,
            }
        )
        mti = f"{int(msg.mti) + 10:04d}"
        if mti in ("0110", "0210", "0230", "0410"):
            fields[63] = self.card_org
            if code == "00":
                fields[38] = f"{self.rrn_counter:06d}"
        if msg.mti == "0800" and code == "00":
            variant = Field60.parse(msg.text(60)).net_code
            fields[62] = wrap_f62(variant, KEYS[variant], self.tmk)
            fields[60] = "00" + self.batch + variant
        if msg.mti == "0500":
            f48 = SettlementF48.parse(msg.text(48))
            r = self.settlement_result
            fields[48] = SettlementF48(
                SettlementTotalsF48(*_totals(f48.domestic), result=r),
                SettlementTotalsF48(*_totals(f48.foreign), result=r),
            ).render()
        response = Message(mti, fields)
        frame = TerminalFrame(
            reply_tpdu(request.tpdu), response_header(request.header, self.processing), response
        )
        if mti in MACED and code != "A0":
            response[64] = b"00000000"
            out = encode_terminal(frame)
            mac = cup_ecb_mac(KEYS["003"].mak, terminal_mab(out))
            if self.bad_mac:
                mac = b"DEADBEEF"
            return out[:-8] + mac
        return encode_terminal(frame)


def _totals(t: SettlementTotalsF48) -> tuple[int, int, int, int]:
    return t.debit_amount_minor, t.debit_count, t.credit_amount_minor, t.credit_count


async def serve(
    switch: FakeSwitch, *, hang_up_after: int | None = None, die_after: int | None = None
) -> asyncio.Server:
    """Serve the fake switch on 127.0.0.1 with an ephemeral port; with
    ``hang_up_after`` each connection is closed after that many answers; with
    ``die_after`` the whole switch dies (listener closed, every connection
    aborted) once it has answered that many requests in all."""
    writers: set[asyncio.StreamWriter] = set()
    answered_in_all = 0
    server: asyncio.Server | None = None

    def die() -> None:
        assert server is not None
        server.close()
        for writer in writers:
            writer.transport.abort()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered_in_all
        if die_after is not None and answered_in_all >= die_after:
            writer.transport.abort()
            return
        writers.add(writer)
        framer = BinaryLengthFramer()
        answered = 0
        try:
            while data := await reader.read(4096):
                for body in framer.feed(data):
                    answer = switch.answer(body)
                    if answer is not None:
                        writer.write(frame_binary(answer))
                        answered += 1
                        answered_in_all += 1
                        if die_after is not None and answered_in_all >= die_after:
                            die()
                            return
                if hang_up_after is not None and answered >= hang_up_after:
                    break
        except ConnectionError:
            pass
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    return server


@contextmanager
def serve_in_thread(switch: FakeSwitch, **options: int | None) -> Iterator[int]:
    """The fake switch on its own loop in a thread (for a fleet run in this
    process's loop or in a subprocess); yields its port, stops it on exit."""
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def body() -> None:
        server = await serve(switch, **options)
        holder["port"] = server.sockets[0].getsockname()[1]
        holder["loop"] = asyncio.get_running_loop()
        holder["stop"] = stop = asyncio.Event()
        ready.set()
        await stop.wait()
        server.close()

    thread = threading.Thread(target=lambda: asyncio.run(body()), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the fake switch did not start")
    try:
        yield int(holder["port"])  # type: ignore[call-overload]
    finally:
        loop = holder["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        loop.call_soon_threadsafe(holder["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)
