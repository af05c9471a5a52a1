"""The fleet's transaction mix: which transaction a terminal sends next.

Invariants: only active cards are used (so approvals are possible); amounts
avoid the issuer's demo trigger amounts; a follow-up (void, refund,
completion) is chosen only when the terminal's journal holds an original for
it (a refund: one with an amount not yet refunded, at most what is left), else
the terminal sends the original kind instead (purchase / preauth); a
transfer goes to another active card, always with the paying card's PIN.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from terminals.cards import TerminalCard
from terminals.chip import ChipCard
from terminals.chipwallet import chip_for, held
from terminals.journal import JournalEntry
from terminals.machine import TerminalMachine
from terminals.requests import IC, MAGSTRIPE
from terminals.txn import TxnKind

MIX_NAMES = ("purchase", "balance", "void", "refund", "preauth", "completion", "transfer")
DEFAULT_MIX = "purchase=70,balance=10,void=5,refund=5,preauth=5,completion=5"
MIN_AMOUNT_MINOR = 100
MAX_AMOUNT_MINOR = 5000  # small: the demo cards' balances and daily limits last longer
TRIGGER_AMOUNTS_MINOR = frozenset({99404, 99451})

Build = Callable[[TerminalMachine], bytes]


def parse_mix(text: str) -> dict[str, int]:
    """``purchase=70,balance=10`` -> weights; ValueError names the bad item."""
    weights: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in MIX_NAMES:
            raise ValueError(f"mix item {item!r}: expected NAME=WEIGHT with NAME in {MIX_NAMES}")
        if not value.strip().isdigit():
            raise ValueError(f"mix item {item!r}: weight must be a non-negative integer")
        weights[name] = int(value)
    if not weights or sum(weights.values()) == 0:
        raise ValueError("the mix needs at least one positive weight")
    return weights


@dataclass(frozen=True, slots=True)
class MixSettings:
    weights: dict[str, int]
    pin_ratio: float = 0.5
    ic_ratio: float = 0.3


class TxnPicker:
    """Chooses the next transaction for a terminal and returns its builder."""

    def __init__(self, settings: MixSettings, cards: list[TerminalCard], seed: int | None = None):
        active = [c for c in cards if c.active]
        if not active:
            raise ValueError("no active card to transact with")
        self._cards = active
        self._settings = settings
        self._names = list(settings.weights)
        self._weights = [settings.weights[n] for n in self._names]
        self._rng = random.Random(seed)
        self._chips_of: tuple[dict[str, ChipCard], list[ChipCard | None]] | None = None

    def _amount(self) -> int:
        amount = self._rng.randint(MIN_AMOUNT_MINOR, MAX_AMOUNT_MINOR)
        return amount + 1 if amount in TRIGGER_AMOUNTS_MINOR else amount

    def _card(self) -> tuple[TerminalCard, str | None, str]:
        card = self._rng.choice(self._cards)
        pin = card.pin if self._rng.random() < self._settings.pin_ratio else None
        entry = MAGSTRIPE
        if self._rng.random() < self._settings.ic_ratio:
            chip_card = self._free_chip_card(card)
            if chip_card is not None:
                card, entry = chip_card, IC
        return card, pin, entry

    def _free_chip_card(self, preferred: TerminalCard) -> TerminalCard | None:
        """A card whose simulated chip is not in another terminal's reader right now
        (a card serves one transaction at a time, so its ATCs reach the issuer in
        order); None when every chip card is busy (the terminal swipes instead)."""
        chip = chip_for(preferred.pan)
        if chip is not None and not chip.in_use:
            return preferred
        cards, chips = self._cards, self._chips()
        start = self._rng.randrange(len(cards))
        for offset in range(len(cards)):  # from a random card on, without copying the list
            index = (start + offset) % len(cards)
            chip = chips[index]
            if chip is not None and not chip.in_use:
                return cards[index]
        return None

    def _chips(self) -> list[ChipCard | None]:
        """Each card's simulated chip (None: magstripe only), in card order, looked up
        once per wallet (the wallet is a new dict after ``use_chip_cards``)."""
        wallet = held()
        if self._chips_of is None or self._chips_of[0] is not wallet:
            self._chips_of = (wallet, [wallet.get(card.pan) for card in self._cards])
        return self._chips_of[1]

    def _open(
        self, machine: TerminalMachine, kind: TxnKind, *, refund: bool = False
    ) -> JournalEntry | None:
        """An original of ``kind`` still open: not voided or completed; for a void
        not refunded at all (the switch answers 12), for a refund not in full."""
        candidates = [
            e
            for e in machine.state.journal.values()
            if e.kind == kind.value
            and not e.voided
            and not e.completed
            and (e.refunded_minor < e.amount_minor if refund else e.refunded_minor == 0)
        ]
        return self._rng.choice(candidates) if candidates else None

    def pick(self, machine: TerminalMachine) -> tuple[str, Build]:
        """(mix name actually used, builder)."""
        name = self._rng.choices(self._names, self._weights)[0]
        card, pin, entry = self._card()
        amount = self._amount()
        if name == "balance":
            return name, lambda m: m.balance(card, pin, entry)
        if name == "transfer" and len(self._cards) > 1:
            payee = self._rng.choice([c for c in self._cards if c.pan != card.pan])
            return name, lambda m: m.transfer(card, payee.pan, amount, card.pin, entry)
        if name in ("void", "refund"):
            original = self._open(machine, TxnKind.PURCHASE, refund=name == "refund")
            if original is not None and name == "void":
                return name, lambda m: m.purchase_void(original.trace)
            if original is not None:
                by_pan = next((c for c in self._cards if c.pan == original.pan), card)
                left = original.amount_minor - original.refunded_minor
                refund_minor = max(1, min(left, original.amount_minor // 2))
                return name, lambda m: m.refund(by_pan, original.rrn, original.date, refund_minor)
            name = "purchase"
        if name == "completion":
            preauth = self._open(machine, TxnKind.PREAUTH)
            if preauth is not None:
                return name, lambda m: m.completion(preauth.trace, preauth.amount_minor)
            name = "preauth"
        if name == "preauth":
            return name, lambda m: m.preauth(card, amount, pin, entry)
        return "purchase", lambda m: m.purchase(card, amount, pin, entry)
