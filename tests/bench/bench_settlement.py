"""Settlement of a terminal with 10,000 transactions in its batch.

Three figures: the 0500 through the settlement step alone (journal totals from
SQLite), the same 0500 end to end over a socket (switch pipeline: terminal,
keys and batch checks, store), and the whole batch upload that follows (1,250
messages of 8 records, each checked against the journal), then the end message
that closes the batch.  Target: the 0500 answered within one second.

F48 counts are n3, so the terminal reports 10,000 debits as 000 (the switch
compares counts modulo 1000 and amounts exactly).

Run: ``python -m tests.bench settlement``.  Figures on a shared 2-core machine are
pessimistic: the simulated terminal runs in the same process as the switch.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from posp.admin import Admin
from posp.framing import frame_binary
from posp.iso8583 import Message, decode_terminal
from posp.iso8583.fields import (
    SettlementF48,
    SettlementTotalsF48,
    UploadRecord,
    render_upload_end_f48,
    render_upload_f48,
)
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.log import configure_logging
from posp.pipeline import settlement
from posp.settings import load_settings
from posp.store import open_store
from posp.store.api import APPROVED, JournalEntry, Merchant, Store
from posp.switch import Switch
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from terminals.session import SessionOptions, TerminalSession

TRANSACTIONS = 10_000
MERCHANT = "898100000000001"
TERMINAL = "10000001"
BATCH = "000001"
TMK = "0123456789ABCDEFFEDCBA9876543210"
PAN = "6225880000000000010"


def amount_of(index: int) -> int:
    return 100 + index % 5000


async def seed(store: Store, pan_hash: settlement.PanHasher) -> float:
    """Journal TRANSACTIONS approved domestic purchases; returns the seconds taken."""
    started = time.perf_counter()
    hashed = pan_hash(PAN)
    for index in range(TRANSACTIONS):
        entry = JournalEntry(
            TERMINAL,
            MERCHANT,
            BATCH,
            f"{index + 1:06d}",
            "purchase",
            "0200",
            amount_minor=amount_of(index),
            pan_hash=hashed,
            state=APPROVED,
        )
        await store.insert_entry(entry)
    return time.perf_counter() - started


def reported_totals() -> SettlementF48:
    total = sum(amount_of(i) for i in range(TRANSACTIONS))
    zero = SettlementTotalsF48(0, 0, 0, 0)
    return SettlementF48(SettlementTotalsF48(total, TRANSACTIONS % 1000, 0, 0), zero)


class RawTerminal:
    """Sends hand-built management messages on one connection (no MAC)."""

    def __init__(self, machine: TerminalMachine, port: int) -> None:
        self.machine = machine
        self.port = port
        self.trace = 20_000
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, mti: str, net_code: str, f48: str) -> Message:
        if self._streams is None:
            self._streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self._streams
        self.trace += 1
        fields: dict[int, str | bytes] = {
            11: f"{self.trace % 1_000_000:06d}",
            41: TERMINAL,
            42: MERCHANT,
            48: f48,
            49: "156",
            60: "00" + BATCH + net_code,
        }
        writer.write(frame_binary(self.machine.encode(Message(mti, fields), mac=False)))
        length = int.from_bytes(await reader.readexactly(2), "big")
        return decode_terminal(await reader.readexactly(length)).message

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()


async def upload_all(client: RawTerminal) -> tuple[int, float]:
    started = time.perf_counter()
    records = [UploadRecord("00", f"{i + 1:06d}", PAN, amount_of(i)) for i in range(TRANSACTIONS)]
    messages = 0
    for offset in range(0, TRANSACTIONS, 8):
        answer = await client.send("0320", "201", render_upload_f48(records[offset : offset + 8]))
        messages += 1
        if answer.text(39) != "00":
            raise RuntimeError(f"upload answered {answer.text(39)}")
    end = await client.send("0320", "207", render_upload_end_f48(TRANSACTIONS % 10_000))
    if end.text(39) != "00":
        raise RuntimeError(f"upload end answered {end.text(39)}")
    return messages + 1, time.perf_counter() - started


async def run(data_dir: Path) -> None:
    settings = load_settings(
        terminal_port=0, metrics_enabled=False, network_enabled=False, data_dir=data_dir
    )
    store = open_store(settings.store_url, node_id="01")
    await store.open()
    hsm = inprocess_hsm_client()
    await store.add_merchant(Merchant(MERCHANT, "Bench shop", "5411"))
    await Admin(store, hsm).add_terminal(TERMINAL, MERCHANT, tmk_hex=TMK)
    machine = TerminalMachine(TerminalConfig(TERMINAL, MERCHANT, bytes.fromhex(TMK)))
    switch = Switch(settings, store=store, hsm=hsm)
    await switch.start()
    client = RawTerminal(machine, switch.port)
    try:
        assert switch.pipeline is not None
        seed_s = await seed(store, switch.pipeline.services.pan_hash)
        print(f"seeded {TRANSACTIONS} journal entries in {seed_s:.1f} s")
        started = time.perf_counter()
        outcome = await settlement.settle(store, TERMINAL, MERCHANT, BATCH, reported_totals())
        step_ms = (time.perf_counter() - started) * 1000
        print(f"settlement step alone: {step_ms:.1f} ms (balanced={outcome.balanced})")

        signed_in = await TerminalSession(machine, SessionOptions(port=switch.port)).prepare()
        assert signed_in is None, "sign-in failed"
        started = time.perf_counter()
        answer = await client.send("0500", "201", reported_totals().render())
        e2e_ms = (time.perf_counter() - started) * 1000
        result = SettlementF48.parse(answer.text(48)).domestic.result
        print(
            f"0500 end to end over a socket: {e2e_ms:.1f} ms "
            f"(39={answer.text(39)}, domestic result {result}; target < 1000 ms)"
        )
        messages, upload_s = await upload_all(client)
        print(
            f"batch upload + end: {messages} messages in {upload_s:.1f} s "
            f"({messages / upload_s:.0f} msg/s, {TRANSACTIONS / upload_s:.0f} records/s)"
        )
        closed = await store.get_terminal(TERMINAL)
        print(f"batch closed: terminal now on batch {closed.batch if closed else '?'}")
    finally:
        await client.close()
        await switch.stop()
        await store.close()


def main() -> None:
    configure_logging("console", "warning")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp)))


if __name__ == "__main__":
    main()
