"""The demo card file: one CSV shared by the issuer simulator and the simulated terminals.

Format (header required, one card per line)::

    pan,expiry,pin,status,balance_minor,daily_limit_minor,card_org

* ``pan`` 13-19 digits; ``expiry`` YYMM; ``pin`` 4-12 digits — the clear test PIN the
  simulated terminals type (the issuer keeps only its PVV);
* ``status`` one of :data:`STATUSES`; amounts in minor units (fen);
* ``card_org`` CUP / VIS / MCC / JCB / AEX (returned in network F63).

Invariant: a row that does not validate raises ``ValueError`` naming the line and
column, never echoing the PAN or PIN.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from posp.iso8583 import mask_pan

DEMO_CARDS: Final[Path] = Path(__file__).with_name("demo_cards.csv")
HEADER: Final[tuple[str, ...]] = (
    "pan",
    "expiry",
    "pin",
    "status",
    "balance_minor",
    "daily_limit_minor",
    "card_org",
)
STATUSES: Final[frozenset[str]] = frozenset({"active", "lost", "stolen", "restricted", "expired"})
CARD_ORGS: Final[frozenset[str]] = frozenset({"CUP", "VIS", "MCC", "JCB", "AEX"})


@dataclass(frozen=True, slots=True)
class CardRecord:
    pan: str
    expiry: str  # YYMM
    pin: str  # clear test PIN (demo data only)
    status: str
    balance_minor: int
    daily_limit_minor: int
    card_org: str

    def __repr__(self) -> str:  # never show the PIN or the full PAN
        masked = mask_pan(self.pan)
        return f"CardRecord(pan={masked!r}, status={self.status!r}, card_org={self.card_org!r})"


def _check(ok: bool, line: int, column: str, why: str) -> None:
    if not ok:
        raise ValueError(f"card file line {line}, column {column}: {why}")


def parse_card_row(row: dict[str, str], line: int) -> CardRecord:
    """Validate one CSV row (a dict keyed by :data:`HEADER`)."""
    pan = (row.get("pan") or "").strip()
    _check(pan.isdigit() and 13 <= len(pan) <= 19, line, "pan", "must be 13-19 digits")
    expiry = (row.get("expiry") or "").strip()
    _check(expiry.isdigit() and len(expiry) == 4, line, "expiry", "must be YYMM")
    _check(1 <= int(expiry[2:]) <= 12, line, "expiry", "month must be 01-12")
    pin = (row.get("pin") or "").strip()
    _check(pin.isdigit() and 4 <= len(pin) <= 12, line, "pin", "must be 4-12 digits")
    status = (row.get("status") or "").strip().lower()
    _check(status in STATUSES, line, "status", f"must be one of {sorted(STATUSES)}")
    amounts: dict[str, int] = {}
    for column in ("balance_minor", "daily_limit_minor"):
        text = (row.get(column) or "").strip()
        _check(text.isdigit(), line, column, "must be a non-negative integer")
        amounts[column] = int(text)
    org = (row.get("card_org") or "").strip().upper()
    _check(org in CARD_ORGS, line, "card_org", f"must be one of {sorted(CARD_ORGS)}")
    return CardRecord(
        pan, expiry, pin, status, amounts["balance_minor"], amounts["daily_limit_minor"], org
    )


def read_card_file(path: str | Path) -> list[CardRecord]:
    """Read and validate a card file; ``ValueError`` on the first bad row or header."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != HEADER:
            raise ValueError(f"card file header must be {','.join(HEADER)}")
        return [parse_card_row(row, index) for index, row in enumerate(reader, start=2)]


def write_card_file(path: str | Path, records: Iterable[CardRecord]) -> None:
    """Write records in the card file format (used by ``issuer-sim cards export``)."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for r in records:
            writer.writerow(
                [r.pan, r.expiry, r.pin, r.status, r.balance_minor, r.daily_limit_minor, r.card_org]
            )
