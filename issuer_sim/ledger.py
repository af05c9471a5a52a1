"""The issuers' books: card accounts, holds, daily limits and the transaction log.

Pure and synchronous: the server parses a request, has the HSM check the PIN, and
calls :meth:`Ledger.authorize` / :meth:`Ledger.reverse` with the outcome.  Everything
lives in memory (one event loop, no locks); changed accounts and transactions are
marked dirty for the write-behind store (:mod:`issuer_sim.db`).

Invariants:
* A transaction is identified by its *original-data key*: network MTI + STAN + F7 +
  acquirer id (11) + forwarding id (11), exactly the 42 digits of a later F90.
* Money moves exactly once: a void, completion or reversal acts only on an original in
  state ``approved`` and moves it out of that state in the same step; a repeated void
  answers 12, a repeated reversal answers 00 without moving money again.
* ``available = balance - held``; a debit or hold never makes it negative.
* A reversal that arrives before its original is recorded as a ``reversed`` placeholder
  under the original's key (persisted like any transaction); when the original arrives
  later it is declined ``12`` and moves no money (the acquirer already gave up on it).
  A repeat of any original whose key is already ``reversed`` is declined the same way.
* A completion closes its pre-auth: the hold is released and the completion's own
  amount is debited.  A completion void credits that amount back and frees the daily
  limit the pre-auth used; the pre-auth stays closed (``completed``, hold not
  re-instated), so a second completion or a pre-auth void of it answers 12.  Reversing
  the completion void debits and counts the completion again.
* A transfer moves both legs in one step: the paying card is debited (limits and funds
  as for a purchase) and the receiving card credited, or neither.  The credit leg is a
  transaction of its own (key = the transfer's key + :data:`CREDIT_LEG`, kind
  ``transfer_credit``) so it is persisted and restored by its own state: a void or
  reversal moves each leg out of ``approved`` once, and reversing the void puts both
  back once.  The receiving card may belong to another issuer behind this network
  (``Account.issuer_id``); an unknown receiving card answers A3, an account in another
  currency than F49 A1.  A restore is never refused, so it may overdraw the receiver.
* A beneficiary check moves nothing and records nothing: 00 with the masked holder
  name, A3 or A1.
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
#: Suffix of a transfer's credit-leg key (F90 keys are 42 digits: no collision).
CREDIT_LEG: Final = "/credit"
NO_SUCH_ACCOUNT: Final = "A3"
CURRENCY_MISMATCH: Final = "A1"
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


def mask_holder_name(name: str) -> str:
    """The name with all but its last word masked (``ZHANG SAN`` → ``***** SAN``);
    a one-word name keeps only its last character."""
    words = name.split(" ")
    if len(words) == 1:
        return "*" * (len(name) - 1) + name[-1:]
    return " ".join("*" * len(w) for w in words[:-1]) + " " + words[-1]


@dataclass(frozen=True, slots=True)
class Outcome:
    code: str
    auth_code: str | None = None
    available_minor: int | None = None  # for balance inquiries
    holder_name: str | None = None  # masked, for beneficiary checks


class Ledger:
    """Accounts and transactions, with dirty tracking for write-behind persistence."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.txns: dict[str, Txn] = {}
        self.reversed_unknown: set[str] = set()  # 0420s whose original we never saw
        self.dirty_accounts: set[str] = set()
        self.dirty_txns: set[str] = set()
        self._auth_counter = 0

    # --- accounts --------------------------------------------------------
    def put_account(self, account: Account) -> None:
        self.accounts[account.pan] = account
        self.dirty_accounts.add(account.pan)

    def _touch(self, account: Account) -> None:
        self.dirty_accounts.add(account.pan)

    def _record(self, txn: Txn) -> None:
        self.txns[txn.key] = txn
        self.dirty_txns.add(txn.key)

    def _next_auth_code(self) -> str:
        self._auth_counter = self._auth_counter % 999_999 + 1
        return f"{self._auth_counter:06d}"

    # --- authorization ---------------------------------------------------
    def check_card(self, request: Request) -> tuple[Account | None, str]:
        """The account and ``00``, or a decline code for card, expiry or PIN problems."""
        account = self.accounts.get(request.pan)
        if account is None:
            return None, "14"
        if account.status in STATUS_CODES:
            return account, STATUS_CODES[account.status]
        if account.expiry < request.today[2:6] or (
            request.expiry is not None and request.expiry != account.expiry
        ):
            return account, "54"
        if request.pin_ok is False:
            account.pin_failures += 1
            self._touch(account)
            return account, "75" if account.pin_failures >= MAX_PIN_TRIES else "55"
        if request.pin_ok is True and account.pin_failures:
            account.pin_failures = 0
            self._touch(account)
        return account, "00"

    def authorize(self, request: Request, forced_code: str = "") -> Outcome:
        """Decide and apply one financial request.  The same request sent again
        (same network keys: MTI, F11, F7, F32) after it was approved is a duplicate
        transmission: 94, and no money moves a second time."""
        if request.kind == "beneficiary_check":
            return self.check_beneficiary(request)
        if self._already_reversed(request):
            return Outcome("12")
        if request.kind != "balance" and request.key in self.txns:
            return Outcome("94")
        account, code = self.check_card(request)
        if account is None or code != "00":
            return Outcome(code)
        if forced_code and forced_code != "00":
            return Outcome(forced_code)
        if account.spent_day != request.today:
            account.spent_day, account.spent_today_minor = request.today, 0
        handler = _HANDLERS.get(request.kind)
        if handler is None:
            return Outcome("12")
        code = handler(self, account, request)
        if code != "00":
            return Outcome(code)
        auth_code = self._next_auth_code()
        self._touch(account)
        if request.kind != "balance":
            self._record(
                Txn(
                    request.key,
                    request.kind,
                    request.pan,
                    request.amount_minor,
                    APPROVED,
                    auth_code,
                    request.original_key,
                )
            )
        return Outcome("00", auth_code, account.available_minor)

    def _already_reversed(self, request: Request) -> bool:
        """True when a reversal for this request's key came first (or it was reversed
        already): the placeholder is filled in for the record, no money moves."""
        prior = self.txns.get(request.key)
        if prior is None or prior.state != REVERSED:
            return False
        if prior.kind == UNSEEN:
            prior.kind, prior.pan, prior.amount_minor = (
                request.kind,
                request.pan,
                request.amount_minor,
            )
            prior.original_key = request.original_key
            self.reversed_unknown.discard(request.key)
            self.dirty_txns.add(prior.key)
        return True

    def check_beneficiary(self, request: Request) -> Outcome:
        """00 with the masked holder name, A3 (no such account) or A1 (currency)."""
        payee, code = self._payee(request.pan, request.currency)
        if payee is None:
            return Outcome(code)
        masked = mask_holder_name(payee.holder_name)
        return Outcome("00", self._next_auth_code(), holder_name=masked)

    def _payee(self, pan: str | None, currency: str) -> tuple[Account | None, str]:
        payee = self.accounts.get(pan or "")
        if payee is None or payee.status != "active":
            return None, NO_SUCH_ACCOUNT
        if payee.currency != currency:
            return None, CURRENCY_MISMATCH
        return payee, "00"

    def _original(self, request: Request) -> Txn | str:
        """The approved original a referencing request acts on, or a decline code."""
        if request.original_key is None:
            return "30"
        original = self.txns.get(request.original_key)
        if original is None or original.pan != request.pan:
            return "25"
        if original.kind != ORIGINAL_KIND[request.kind] or original.state != APPROVED:
            return "12"
        return original

    def _balance(self, account: Account, request: Request) -> str:
        return "00"

    def _purchase(self, account: Account, request: Request) -> str:
        code = _spend(account, request.amount_minor)
        if code == "00":
            account.balance_minor -= request.amount_minor
        return code

    def _preauth(self, account: Account, request: Request) -> str:
        code = _spend(account, request.amount_minor)
        if code == "00":
            account.held_minor += request.amount_minor
        return code

    def _void(self, account: Account, request: Request) -> str:
        """Purchase void, pre-auth void and completion void: restore the original once."""
        original = self._original(request)
        if isinstance(original, str):
            return original
        if request.amount_minor != original.amount_minor:
            return "64"
        if original.kind == "preauth":
            account.held_minor -= original.amount_minor
        else:
            account.balance_minor += original.amount_minor
        account.spent_today_minor = max(0, account.spent_today_minor - self._limit_use(original))
        original.state = VOIDED
        self.dirty_txns.add(original.key)
        return "00"

    def _limit_use(self, txn: Txn) -> int:
        """What ``txn`` counts against the daily limit: a completion counts through the
        pre-auth it closed (the completion itself adds nothing)."""
        if txn.kind != "completion":
            return txn.amount_minor
        preauth = self.txns.get(txn.original_key or "")
        return preauth.amount_minor if preauth is not None else 0

    def _refund(self, account: Account, request: Request) -> str:
        account.balance_minor += request.amount_minor
        return "00"

    def _completion(self, account: Account, request: Request) -> str:
        original = self._original(request)
        if isinstance(original, str):
            return original
        hold = original.amount_minor
        if request.amount_minor * 100 > hold * COMPLETION_TOLERANCE_PERCENT:
            return "64"
        if account.available_minor + hold < request.amount_minor:
            return "51"
        account.held_minor -= hold
        account.balance_minor -= request.amount_minor
        original.state = COMPLETED
        self.dirty_txns.add(original.key)
        return "00"

    def _transfer(self, account: Account, request: Request) -> str:
        """Debit the paying card and credit the receiving one, or neither."""
        payee, code = self._payee(request.receiving_pan, request.currency)
        if payee is None:
            return code
        if payee is account or account.currency != request.currency:
            return "12" if payee is account else CURRENCY_MISMATCH
        code = _spend(account, request.amount_minor)
        if code != "00":
            return code
        account.balance_minor -= request.amount_minor
        payee.balance_minor += request.amount_minor
        self._touch(payee)
        leg = Txn(request.key + CREDIT_LEG, "transfer_credit", payee.pan, request.amount_minor,
                  APPROVED, "", request.key)  # fmt: skip
        self._record(leg)
        return "00"

    def _transfer_void(self, account: Account, request: Request) -> str:
        """Restore both legs of the original transfer once."""
        original = self._original(request)
        if isinstance(original, str):
            return original
        if request.amount_minor != original.amount_minor:
            return "64"
        self._undo_transfer(account, original)
        original.state = VOIDED
        self.dirty_txns.add(original.key)
        return "00"

    def _credit_leg(self, transfer: Txn, *, restore: bool) -> None:
        """Take back (``restore``) or give again the credit leg of ``transfer``, each
        only from the other state: exactly once."""
        leg = self.txns.get(transfer.key + CREDIT_LEG)
        payee = None if leg is None else self.accounts.get(leg.pan)
        if leg is None or payee is None or (leg.state == APPROVED) != restore:
            return
        payee.balance_minor += -leg.amount_minor if restore else leg.amount_minor
        leg.state = REVERSED if restore else APPROVED
        self.dirty_txns.add(leg.key)
        self._touch(payee)

    # --- reversal ----------------------------------------------------------
    def reverse(self, key: str) -> None:
        """Undo the transaction with original-data ``key`` exactly once (always 00)."""
        txn = self.txns.get(key)
        if txn is None:  # the original may still come: it will be declined (docstring)
            self.reversed_unknown.add(key)
            self._record(Txn(key, UNSEEN, "", 0, REVERSED, ""))
            return
        if txn.state != APPROVED:  # already reversed, voided or consumed: nothing to undo
            return
        account = self.accounts[txn.pan]
        _UNDO[txn.kind](self, account, txn)
        txn.state = REVERSED
        self.dirty_txns.add(txn.key)
        self._touch(account)

    def _undo_debit(self, account: Account, txn: Txn) -> None:
        account.balance_minor += txn.amount_minor
        account.spent_today_minor = max(0, account.spent_today_minor - txn.amount_minor)

    def _undo_transfer(self, account: Account, txn: Txn) -> None:
        self._undo_debit(account, txn)
        self._credit_leg(txn, restore=True)

    def _undo_preauth(self, account: Account, txn: Txn) -> None:
        account.held_minor -= txn.amount_minor
        account.spent_today_minor = max(0, account.spent_today_minor - txn.amount_minor)

    def _undo_refund(self, account: Account, txn: Txn) -> None:
        account.balance_minor -= txn.amount_minor

    def _undo_void(self, account: Account, txn: Txn) -> None:
        """Reinstate the voided original (its money leaves or is held again)."""
        original = self.txns.get(txn.original_key or "")
        if original is None or original.state != VOIDED:
            return
        if original.kind == "preauth":
            account.held_minor += original.amount_minor
        else:
            account.balance_minor -= original.amount_minor
        account.spent_today_minor += self._limit_use(original)
        original.state = APPROVED
        self.dirty_txns.add(original.key)
        if original.kind == "transfer":
            self._credit_leg(original, restore=False)

    def _undo_completion(self, account: Account, txn: Txn) -> None:
        account.balance_minor += txn.amount_minor
        preauth = self.txns.get(txn.original_key or "")
        if preauth is not None and preauth.state == COMPLETED:
            account.held_minor += preauth.amount_minor
            preauth.state = APPROVED
            self.dirty_txns.add(preauth.key)


_HANDLERS = {
    "balance": Ledger._balance,
    "purchase": Ledger._purchase,
    "purchase_void": Ledger._void,
    "refund": Ledger._refund,
    "preauth": Ledger._preauth,
    "preauth_void": Ledger._void,
    "completion": Ledger._completion,
    "completion_void": Ledger._void,
    "transfer": Ledger._transfer,
    "transfer_void": Ledger._transfer_void,
}
_UNDO = {
    "purchase": Ledger._undo_debit,
    "purchase_void": Ledger._undo_void,
    "refund": Ledger._undo_refund,
    "preauth": Ledger._undo_preauth,
    "preauth_void": Ledger._undo_void,
    "completion": Ledger._undo_completion,
    "completion_void": Ledger._undo_void,
    "transfer": Ledger._undo_transfer,
    "transfer_void": Ledger._undo_void,
}


def _spend(account: Account, amount: int) -> str:
    """Count ``amount`` against today's limit when the limit and the funds allow it
    (``00``); otherwise ``61`` or ``51`` with nothing changed."""
    if account.spent_today_minor + amount > account.daily_limit_minor:
        return "61"
    if account.available_minor < amount:
        return "51"
    account.spent_today_minor += amount
    return "00"
