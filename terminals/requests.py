"""Field builders for terminal requests (terminal-link.md §2-3, §6, §8).

Invariants: PAN, track and PIN only ever flow into fields 2, 14, 35, 52 and
55 here; F53 says what was done (format 0 with PAN, key length, track
encryption); entry mode F22 is ``02x`` for a swipe, ``05x`` for a chip read
and ``07x`` contactless, with x = ``1`` when a PIN was entered and ``2``
otherwise.  A chip read's F55 is the simulated card's first GENERATE AC
(``terminals.chip``): a real ARQC under the card's session key, which the
issuer verifies through its HSM.  A swipe of a chip card (``fallback`` after
a failed chip read, ``swiped_chip`` on a magstripe-only reader) carries the
chip card's track 2 (service code 201).
"""

from __future__ import annotations

from dataclasses import dataclass

from posp.crypto.des import tdes_encrypt_ecb
from posp.crypto.pinblock import iso0_clear
from posp.crypto.track import encrypt_track
from posp.iso8583.message import FieldValue
from terminals.cards import TerminalCard
from terminals.chip import ChipCard, TerminalChipData

MAGSTRIPE = "magstripe"
IC = "ic"
CONTACTLESS = "contactless"
FALLBACK = "fallback"  # chip read failed: swipe, 60.5 = 2
SWIPED_CHIP = "swiped_chip"  # a magstripe-only reader swipes a chip card
ENTRY_PREFIX = {MAGSTRIPE: "02", IC: "05", CONTACTLESS: "07", FALLBACK: "02", SWIPED_CHIP: "02"}
CHIP_READS = frozenset({IC, CONTACTLESS})
CHIP_SWIPES = frozenset({FALLBACK, SWIPED_CHIP})
CHIP_SERVICE_CODE = "201"
PIN_CAPTURE_CODE = "12"


@dataclass(frozen=True, slots=True)
class CardPresent:
    """The card data one transaction carries (from a swipe/dip or the journal)."""

    pan: str
    expiry: str
    track2: str
    entry: str = MAGSTRIPE

    @classmethod
    def from_card(cls, card: TerminalCard, entry: str = MAGSTRIPE) -> CardPresent:
        if entry not in ENTRY_PREFIX:
            raise ValueError(f"entry must be one of {sorted(ENTRY_PREFIX)}")
        track2 = card.track2
        if entry in CHIP_SWIPES:  # the chip card's own magstripe says "use the chip"
            head = f"{card.pan}={card.expiry}"
            track2 = head + CHIP_SERVICE_CODE + track2[len(head) + len(CHIP_SERVICE_CODE) :]
        return cls(card.pan, card.expiry, track2, entry)

    def __repr__(self) -> str:
        return f"CardPresent(<card>, entry={self.entry!r})"


def security_control(pik: bytes, track_encrypted: bool) -> str:
    """F53: format 0 with PAN, key length (0 single / 6 double), track encryption."""
    length_digit = "0" if len(pik) == 8 else "6"
    return "2" + length_digit + ("1" if track_encrypted else "0") + "0" * 13


#: (PIK, PIN, PAN) -> F52: format 0 is deterministic and a fleet reuses a few cards
#: under one PIK per terminal, so each block is computed once (bounded: cleared when full).
_pin_blocks: dict[tuple[bytes, str, str], bytes] = {}
_PIN_BLOCKS_MAX = 4096


def pin_block(pik: bytes, pin: str, pan: str) -> bytes:
    """F52: ISO 9564 format 0 with PAN, encrypted under the PIK."""
    key = (pik, pin, pan)
    block = _pin_blocks.get(key)
    if block is None:
        block = tdes_encrypt_ecb(pik, iso0_clear(pin, pan))
        if len(_pin_blocks) >= _PIN_BLOCKS_MAX:
            _pin_blocks.clear()
        _pin_blocks[key] = block
    return block


def card_fields(
    card: CardPresent,
    *,
    pin: str | None,
    pik: bytes | None,
    tdk: bytes | None,
    amount_minor: int | None,
    date_yymmdd: str,
    chip: ChipCard | None = None,
    chip_data: TerminalChipData | None = None,
) -> dict[int, FieldValue]:
    """Fields 2, 14, 22, 23, 26, 35, 52, 53, 55 for one card-present request.

    ``tdk`` not None means "encrypt track 2 under it" (F53 digit 3 = 1).  A chip
    read with ``chip`` and ``chip_data`` (first presentments) gets F23 and the
    card's F55; a chip read without them (voids) carries no F55."""
    fields: dict[int, FieldValue] = {
        2: card.pan,
        14: card.expiry,
        22: ENTRY_PREFIX[card.entry] + ("1" if pin else "2"),
        35: card.track2 if tdk is None else encrypt_track(tdk, card.track2),
    }
    if pin:
        if pik is None:
            raise ValueError("a PIN needs a PIK (sign in first)")
        fields[26] = PIN_CAPTURE_CODE
        fields[52] = pin_block(pik, pin, card.pan)
    if (pin or tdk is not None) and pik is not None:
        # Without a PIN, F53 still tells the switch that 35 is encrypted.
        fields[53] = security_control(pik, tdk is not None)
    if card.entry in CHIP_READS and chip is not None:
        fields[23] = "0" + chip.psn
        if chip_data is not None:
            fields[55] = chip.first_generate_ac(chip_data)
    return fields
