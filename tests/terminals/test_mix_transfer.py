"""The fleet mix's transfer entry: a transfer from one active card to another."""

from __future__ import annotations

from posp.iso8583 import decode_terminal
from posp.iso8583.fields import parse_transfer_f62
from terminals.cards import TerminalCard
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from terminals.mix import MixSettings, TxnPicker, parse_mix

CARDS = [
    TerminalCard("6225880000000000010", "3012", "123456"),
    TerminalCard("6225880000000000028", "3012", "123456"),
]


def test_transfer_mix_builds_a_transfer_to_another_card() -> None:
    """``--mix transfer=1``: 0200/400000, F25 66, 60.1 49, F62 names the other card."""
    machine = TerminalMachine(TerminalConfig("10000001", "898100000000001", bytes(16)))
    machine.state.signed_in = True
    machine.state.mak = bytes.fromhex("0123456789ABCDEF")
    machine.state.pik = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    picker = TxnPicker(MixSettings(parse_mix("transfer=1")), CARDS, seed=7)
    for _ in range(5):
        name, build = picker.pick(machine)
        message = decode_terminal(build(machine)[2:]).message
        machine.in_flight = None
        machine.state.pending_reversal = None
        f62 = message.get(62)
        assert name == "transfer" and isinstance(f62, bytes)
        assert (message.mti, message.text(3), message.text(25)) == ("0200", "400000", "66")
        assert message.text(60)[:2] == "49" and 52 in message
        assert parse_transfer_f62(f62) != message.text(2)
