"""The issuer ledger's records: accounts, transactions, requests and outcomes, and
the one spending rule (daily limit, then funds) purchases, pre-auths and transfers
share.  Pure data; :mod:`issuer_sim.ledger` applies requests to them.

Invariants: ``available = balance - held``; :func:`spend` never lets a debit or a
hold make it negative, and changes nothing when it declines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

APPROVED: Final = "approved"
#: Kind of the placeholder a reversal records for an original not (yet) seen.
UNSEEN: Final = "unseen"
VOIDED: Final = "voided"
REVERSED: Final = "reversed"
COMPLETED: Final = "completed"

STATUS_CODES: Final[dict[str, str]] = {
    "lost": "41",
    "stolen": "43",
    "restricted": "57",
    "expired": "54",
}
MAX_PIN_TRIES: Final = 3
COMPLETION_TOLERANCE_PERCENT: Final = 115
#: The kind of original each referencing transaction acts on.
ORIGINAL_KIND: Final[dict[str, str]] = {
    "purchase_void": "purchase",
    "preauth_void": "preauth",
    "completion": "preauth",
    "completion_void": "completion",
    "transfer_void": "transfer",
}


@dataclass(slots=True)
class Account:
    pan: str
    expiry: str  # YYMM
    status: str
    pvv: str  # 4 digits, PVKI 1
    balance_minor: int
    daily_limit_minor: int
    card_org: str
    held_minor: int = 0
    spent_today_minor: int = 0
    spent_day: str = ""  # YYYYMMDD the counter belongs to
    pin_failures: int = 0
    holder_name: str = ""  # ASCII; answered masked to beneficiary checks
    currency: str = "156"
    issuer_id: str = ""  # "": the simulator's own issuer

    @property
    def available_minor(self) -> int:
        return self.balance_minor - self.held_minor


@dataclass(slots=True)
class Txn:
    key: str
    kind: str
    pan: str
    amount_minor: int
    state: str
    auth_code: str
    original_key: str | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """A financial request as the ledger needs it (already parsed and PIN-checked)."""

    kind: str  # balance, purchase, purchase_void, refund, preauth, ...
    key: str  # this request's original-data key
    pan: str
    amount_minor: int
    today: str  # YYYYMMDD on the issuer clock
    expiry: str | None = None  # F14 when sent
    original_key: str | None = None  # from F90
    pin_ok: bool | None = None  # None: no PIN in the request
    receiving_pan: str | None = None  # F103 of a transfer
    currency: str = "156"  # F49


@dataclass(frozen=True, slots=True)
class Outcome:
    code: str
    auth_code: str | None = None
    available_minor: int | None = None  # for balance inquiries
    holder_name: str | None = None  # masked, for beneficiary checks


def spend(account: Account, amount: int) -> str:
    """Count ``amount`` against today's limit when the limit and the funds allow it
    (``00``); otherwise ``61`` or ``51`` with nothing changed."""
    if account.spent_today_minor + amount > account.daily_limit_minor:
        return "61"
    if account.available_minor < amount:
        return "51"
    account.spent_today_minor += amount
    return "00"
