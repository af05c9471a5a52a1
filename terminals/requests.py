"""Field builders for terminal requests (terminal-link.md §2-3, §6).  Pure.

Invariants: PAN, track and PIN only ever flow into fields 2, 14, 35, 52 and
55 here; F53 says what was done (format 0 with PAN, key length, track
encryption); entry mode F22 is ``02x`` for magstripe and ``05x`` for IC, with
x = ``1`` when a PIN was entered and ``2`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from posp.crypto.des import tdes_encrypt_ecb
from posp.crypto.pinblock import iso0_clear
from posp.crypto.track import encrypt_track
from posp.iso8583.message import FieldValue
from terminals.cards import TerminalCard

MAGSTRIPE = "magstripe"
IC = "ic"
ENTRY_PREFIX = {MAGSTRIPE: "02", IC: "05"}
PIN_CAPTURE_CODE = "12"
CARD_SEQUENCE = "001"


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
        return cls(card.pan, card.expiry, card.track2, entry)

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


def _tlv(tag: str, value: bytes) -> bytes:
    return bytes.fromhex(tag) + bytes([len(value)]) + value


def ic_data(amount_minor: int, date_yymmdd: str) -> bytes:
    """A plausible F55 TLV for a chip read (fixed cryptogram: the simulated
    network does not verify ARQCs)."""
    return b"".join(
        (
            _tlv("9F26", bytes.fromhex("1122334455667788")),
            _tlv("9F27", b"\x80"),
            _tlv("9F10", bytes.fromhex("07010103A00000010A010000000000")),
            _tlv("9F37", bytes.fromhex("12345678")),
            _tlv("9F36", b"\x00\x01"),
            _tlv("95", bytes(5)),
            _tlv("9A", bytes.fromhex(date_yymmdd)),
            _tlv("9C", b"\x00"),
            _tlv("9F02", bytes.fromhex(f"{amount_minor:012d}")),
            _tlv("5F2A", bytes.fromhex("0156")),
            _tlv("82", bytes.fromhex("7C00")),
            _tlv("9F1A", bytes.fromhex("0156")),
            _tlv("9F03", bytes(6)),
            _tlv("9F33", bytes.fromhex("E0E1C8")),
        )
    )


def card_fields(
    card: CardPresent,
    *,
    pin: str | None,
    pik: bytes | None,
    tdk: bytes | None,
    amount_minor: int | None,
    date_yymmdd: str,
) -> dict[int, FieldValue]:
    """Fields 2, 14, 22, 23, 26, 35, 52, 53, 55 for one card-present request.

    ``tdk`` not None means "encrypt track 2 under it" (F53 digit 3 = 1)."""
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
    if card.entry == IC:
        fields[23] = CARD_SEQUENCE
        fields[55] = ic_data(amount_minor or 0, date_yymmdd)
    return fields
