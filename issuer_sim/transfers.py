"""Transfers at the issuer (terminal-link §9, network-link §8): the beneficiary
check and the two legs of a transfer, mixed into :class:`issuer_sim.ledger.Ledger`.

Invariants:
* A transfer moves both legs in one step: the paying card is debited (limits and
  funds as for a purchase, :func:`issuer_sim.books.spend`) and the receiving card
  credited, or neither.
* The credit leg is a transaction of its own (key = the transfer's key +
  :data:`CREDIT_LEG`, kind ``transfer_credit``), persisted like any other, and it
  changes only from the other state: a void or reversal takes it back once,
  reversing the void gives it again once.
* The receiving card may belong to another issuer behind this network
  (``Account.issuer_id``); an unknown or inactive receiving card answers A3, one
  kept in another currency than F49 A1.  A restore is never refused, so it may
  overdraw the receiver.
* A beneficiary check moves nothing and records nothing: 00 with the masked
  holder name, A3 or A1.
"""

from __future__ import annotations

from typing import Final

from issuer_sim.books import APPROVED, REVERSED, VOIDED, Account, Outcome, Request, Txn, spend

#: Suffix of a transfer's credit-leg key (F90 keys are 42 digits: no collision).
CREDIT_LEG: Final = "/credit"
NO_SUCH_ACCOUNT: Final = "A3"
CURRENCY_MISMATCH: Final = "A1"


def mask_holder_name(name: str) -> str:
    """The name with all but its last word masked (``ZHANG SAN`` → ``***** SAN``);
    a one-word name keeps only its last character."""
    words = name.split(" ")
    if len(words) == 1:
        return "*" * (len(name) - 1) + name[-1:]
    return " ".join("*" * len(w) for w in words[:-1]) + " " + words[-1]


class TransferBook:
    """The transfer handlers; the ledger provides the books and the helpers below."""

    accounts: dict[str, Account]
    txns: dict[str, Txn]
    dirty_txns: set[str]

    def _touch(self, account: Account) -> None:
        raise NotImplementedError

    def _record(self, txn: Txn) -> None:
        raise NotImplementedError

    def _next_auth_code(self) -> str:
        raise NotImplementedError

    def _original(self, request: Request) -> Txn | str:
        raise NotImplementedError

    def _undo_debit(self, account: Account, txn: Txn) -> None:
        raise NotImplementedError

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

    def _transfer(self, account: Account, request: Request) -> str:
        """Debit the paying card and credit the receiving one, or neither."""
        payee, code = self._payee(request.receiving_pan, request.currency)
        if payee is None:
            return code
        if payee is account or account.currency != request.currency:
            return "12" if payee is account else CURRENCY_MISMATCH
        code = spend(account, request.amount_minor)
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

    def _undo_transfer(self, account: Account, txn: Txn) -> None:
        self._undo_debit(account, txn)
        self._credit_leg(txn, restore=True)
