"""The terminal's local journal: approved transactions of the current batch.

It answers three questions: what a void / completion needs from its original
(RRN, authorization code, date, card), the settlement totals per card class,
and the batch-upload records.

Invariants: only approved (39 = 00, MAC verified) transactions are recorded;
a void marks its original voided instead of removing it; debits are approved
purchases and completions not voided, credits are approved refunds
(terminal-link §3.3); card class is domestic ``00`` for CUP cards, foreign
``01`` for every other card organisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from posp.iso8583.fields import SettlementF48, SettlementTotalsF48, UploadRecord
from terminals.txn import CREDIT_KINDS, DEBIT_KINDS, TxnKind

DOMESTIC = "00"
FOREIGN = "01"
DOMESTIC_ORG = "CUP"


def card_class(card_org: str) -> str:
    """``00`` domestic for CUP, ``01`` foreign for any other organisation."""
    return DOMESTIC if card_org.strip().upper() == DOMESTIC_ORG else FOREIGN


@dataclass(slots=True)
class JournalEntry:
    """One approved transaction as the terminal remembers it."""

    kind: str  # TxnKind value
    trace: str
    batch: str
    pan: str
    expiry: str
    track2: str
    entry_mode: str
    amount_minor: int
    rrn: str
    auth_code: str
    date: str  # MMDD from the response's F13
    card_class: str
    voided: bool = False
    completed: bool = False  # pre-authorizations only: a completion was approved
    refunded_minor: int = 0  # purchases only: approved refunds against it so far

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JournalEntry:
        return cls(**raw)

    def __repr__(self) -> str:
        return f"JournalEntry({self.kind}, trace={self.trace}, amount_minor={self.amount_minor})"


def _counted(entry: JournalEntry) -> bool:
    kind = TxnKind(entry.kind)
    return (kind in DEBIT_KINDS and not entry.voided) or kind in CREDIT_KINDS


def _totals(entries: list[JournalEntry], klass: str) -> SettlementTotalsF48:
    debits = [
        e.amount_minor
        for e in entries
        if e.card_class == klass and TxnKind(e.kind) in DEBIT_KINDS and not e.voided
    ]
    credits = [
        e.amount_minor for e in entries if e.card_class == klass and TxnKind(e.kind) in CREDIT_KINDS
    ]
    return SettlementTotalsF48(sum(debits), len(debits), sum(credits), len(credits), "0")


def settlement_totals(entries: list[JournalEntry]) -> SettlementF48:
    """F48 of the 0500: debit and credit totals for domestic and foreign cards."""
    return SettlementF48(_totals(entries, DOMESTIC), _totals(entries, FOREIGN))


def upload_records(entries: list[JournalEntry]) -> list[UploadRecord]:
    """Batch-upload records for every transaction counted in the settlement."""
    return [
        UploadRecord(e.card_class, e.trace, e.pan, e.amount_minor)
        for e in sorted(entries, key=lambda e: e.trace)
        if _counted(e)
    ]
