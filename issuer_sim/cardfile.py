"""The demo card file: one CSV shared by the issuer simulator and the simulated terminals.

Format (header required, one card per line)::

    pan,expiry,pin,status,balance_minor,daily_limit_minor,card_org

* ``pan`` 13-19 digits; ``expiry`` YYMM; ``pin`` 4-12 digits — the clear test PIN the
  simulated terminals type (the issuer keeps only its PVV);
* ``status`` one of :data:`STATUSES`; amounts in minor units (fen);
* ``card_org`` CUP / VIS / MCC / JCB / AEX (returned in network F63).

Optional trailing columns, in this order (files without them keep working):
``holder_name`` (printable ASCII, at most 40; answered masked to beneficiary checks),
``currency`` (n3, default ``156``), ``issuer_id`` (up to 11 digits; empty = the
simulator's own issuer: a card "at another issuer" behind the same network).

Invariant: a row that does not validate raises ``ValueError`` naming the line and
column, never echoing the PAN or PIN.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from issuer_sim.ledger import Account
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
OPTIONAL: Final[tuple[str, ...]] = ("holder_name", "currency", "issuer_id")
MAX_HOLDER_NAME: Final = 40
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
    holder_name: str = ""
    currency: str = "156"
    issuer_id: str = ""

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
    name = (row.get("holder_name") or "").strip()
    _check(
        name.isascii() and name.isprintable() and len(name) <= MAX_HOLDER_NAME,
        line,
        "holder_name",
        f"must be printable ASCII, at most {MAX_HOLDER_NAME} characters",
    )
    currency = (row.get("currency") or "156").strip()
    _check(currency.isdigit() and len(currency) == 3, line, "currency", "must be 3 digits")
    issuer_id = (row.get("issuer_id") or "").strip()
    _check(
        issuer_id == "" or (issuer_id.isdigit() and len(issuer_id) <= 11),
        line,
        "issuer_id",
        "must be empty or up to 11 digits",
    )
    return CardRecord(
        pan, expiry, pin, status, amounts["balance_minor"], amounts["daily_limit_minor"], org,
        name, currency, issuer_id,
    )  # fmt: skip


def read_card_file(path: str | Path) -> list[CardRecord]:
    """Read and validate a card file; ``ValueError`` on the first bad row or header."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        names = tuple(reader.fieldnames or ())
        extra = names[len(HEADER) :]
        if names[: len(HEADER)] != HEADER or extra != OPTIONAL[: len(extra)]:
            raise ValueError(f"card file header must be {','.join(HEADER)} [,{','.join(OPTIONAL)}]")
        return [parse_card_row(row, index) for index, row in enumerate(reader, start=2)]


def apply_card_details(accounts: Mapping[str, Account], records: Iterable[CardRecord]) -> None:
    """Give accounts loaded from a ledger store the card file's holder name, currency
    and issuer (the store keeps balances and states, not these)."""
    for record in records:
        account = accounts.get(record.pan)
        if account is not None:
            account.holder_name = record.holder_name
            account.currency = record.currency
            account.issuer_id = record.issuer_id


def write_card_file(path: str | Path, records: Iterable[CardRecord]) -> None:
    """Write records in the card file format (used by ``issuer-sim cards export``)."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER + OPTIONAL)
        for r in records:
            writer.writerow(
                [r.pan, r.expiry, r.pin, r.status, r.balance_minor, r.daily_limit_minor, r.card_org,
                 r.holder_name, r.currency, r.issuer_id]
            )  # fmt: skip
