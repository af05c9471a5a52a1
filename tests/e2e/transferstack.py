"""A stack for transfer tests: four on-us demo cards, a card at another issuer
(issuer id :data:`OTHER_ISSUER_ID`) and a card kept in US dollars, plus helpers
that read both legs' balances."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Final

from issuer_sim.cardfile import DEMO_CARDS
from terminals.cards import TerminalCard, load_cards
from tests.stackfixtures import Stack

OTHER_ISSUER_PAN: Final = "6225880000000000184"
USD_PAN: Final = "6225880000000000192"
OTHER_ISSUER_ID: Final = "00020344"
UNKNOWN_PAN: Final = "6225889999999999990"
ON_US_CARDS: Final = 4


def write_transfer_cards(path: Path) -> Path:
    """The first on-us active demo cards plus the other-issuer and US-dollar cards."""
    with DEMO_CARDS.open(newline="") as source:
        rows = list(csv.DictReader(source))
    on_us = [r for r in rows if r["status"] == "active" and not r["issuer_id"]]
    on_us = [r for r in on_us if r["currency"] == "156"][:ON_US_CARDS]
    special = [r for r in rows if r["pan"] in (OTHER_ISSUER_PAN, USD_PAN)]
    with path.open("w", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(on_us + special)
    return path


def transfer_stack(tmp_path: Path) -> Stack:
    """A stack (not started) whose issuer loads the transfer cards."""
    stack = Stack.create(tmp_path)
    stack.cards = load_cards(write_transfer_cards(tmp_path / "cards.csv"))
    return stack


def card_by_pan(stack: Stack, pan: str) -> TerminalCard:
    return next(c for c in stack.cards if c.pan == pan)


async def balances(stack: Stack, *cards: TerminalCard) -> tuple[int, ...]:
    return tuple([await stack.balance(c) for c in cards])
