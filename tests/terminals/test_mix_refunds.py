"""The fleet mix's follow-ups against refunded purchases: a refund never asks
for more than is left of its original (the switch would answer 64), and a
void never names a purchase refunded in part (the switch answers 12)."""

from __future__ import annotations

from posp.iso8583 import decode_terminal
from terminals.cards import TerminalCard
from terminals.config import TerminalConfig
from terminals.journal import JournalEntry
from terminals.machine import TerminalMachine
from terminals.mix import MixSettings, TxnPicker, parse_mix
from terminals.txn import TxnKind

CARD = TerminalCard("6225880000000000010", "3012", "123456")


def machine_with(*purchases: tuple[str, int, int]) -> TerminalMachine:
    """A signed-in terminal whose journal holds purchases (trace, amount, refunded)."""
    machine = TerminalMachine(TerminalConfig("10000001", "898100000000001", bytes(16)))
    machine.state.signed_in = True
    machine.state.mak = bytes.fromhex("0123456789ABCDEF")
    machine.state.pik = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    for trace, amount, refunded in purchases:
        machine.state.journal[trace] = JournalEntry(
            kind=TxnKind.PURCHASE.value,
            trace=trace,
            batch="000001",
            pan=CARD.pan,
            expiry=CARD.expiry,
            track2="",
            entry_mode="magstripe",
            amount_minor=amount,
            rrn=f"010000{trace}",
            auth_code="123456",
            date="1203",
            card_class="00",
            refunded_minor=refunded,
        )
    return machine


Picked = list[tuple[str, dict[int, object]]]


def picks(machine: TerminalMachine, mix: str, count: int = 40) -> Picked:
    picker = TxnPicker(MixSettings(parse_mix(mix)), [CARD], seed=3)
    built: Picked = []
    for _ in range(count):
        name, build = picker.pick(machine)
        built.append((name, dict(decode_terminal(build(machine)[2:]).message.fields)))
        machine.in_flight = None
        machine.state.pending_reversal = None
    return built


def test_a_refund_asks_at_most_what_is_left_and_skips_a_purchase_refunded_in_full() -> None:
    machine = machine_with(("000001", 1000, 1000), ("000002", 1000, 900))
    for name, fields in picks(machine, "refund=1"):
        assert name == "refund"
        assert fields[37] == "010000000002"  # never the purchase refunded in full
        assert int(str(fields[4])) == 100  # what is left of 000002


def test_a_void_never_names_a_purchase_refunded_in_part() -> None:
    machine = machine_with(("000001", 1000, 1), ("000002", 1000, 0))
    voids = [fields for name, fields in picks(machine, "void=1") if name == "void"]
    assert voids and all(str(fields[61])[6:12] == "000002" for fields in voids)


def test_with_nothing_open_a_follow_up_becomes_a_purchase() -> None:
    machine = machine_with(("000001", 1000, 1000))
    assert {name for name, _ in picks(machine, "refund=1,void=1")} == {"purchase"}
