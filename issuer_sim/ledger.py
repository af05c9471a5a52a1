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
* Transfers and beneficiary checks: :mod:`issuer_sim.transfers` (both legs or neither,
  each leg restored exactly once).
"""

from __future__ import annotations

from issuer_sim.books import (
    APPROVED,
    COMPLETED,
    COMPLETION_TOLERANCE_PERCENT,
    MAX_PIN_TRIES,
    ORIGINAL_KIND,
    REVERSED,
    STATUS_CODES,
    UNSEEN,
    VOIDED,
    Account,
    Outcome,
    Request,
    Txn,
)
from issuer_sim.books import spend as _spend
from issuer_sim.transfers import TransferBook, mask_holder_name

#: Multiplier of the auth-code counter: prime to 10, so a permutation of the codes,
#: and near 10**6 / golden ratio, so consecutive codes spread over the whole range
#: (142,857 would not: 7 × 142,857 = 999,999 makes seven slowly falling runs).
_AUTH_CODE_STRIDE = 618_033

__all__ = ["APPROVED", "Account", "Ledger", "Outcome", "Request", "Txn", "mask_holder_name"]


class Ledger(TransferBook):
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
        """Six digits, none repeated within 999,999 approvals, in no order (as an
        issuer's codes reach an acquirer: a store indexing them sees scattered
        keys, not an ever-growing one).  The counter times a multiplier prime to
        10, modulo 10**6, visits every code but 000000 once per cycle."""
        self._auth_counter = self._auth_counter % 999_999 + 1
        return f"{self._auth_counter * _AUTH_CODE_STRIDE % 1_000_000:06d}"

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
