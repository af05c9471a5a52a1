"""The response codes (field 39) and the tables that produce them.

* ``ResponseCode``: every code of terminal-link.md §7 (and §8–§11), each with its
  meaning and what the terminal does on it.  Steps return members, never literals.
* ``EXCEPTION_CODES``: the one table mapping exceptions to codes (principle 4: a
  decline is control flow — a step returns a code —; an exception is a fault,
  translated here and only here).  Searched in order, so a subclass comes before
  its base.  Anything unmapped answers 96 and is logged once per exception type
  (with its traceback), so a new fault is visible without flooding the log.
* ``terminal_code``: the network's F39 → the terminal's (network-link §3).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from posp.errors import (
    DecodeError,
    DuplicateTransaction,
    HsmError,
    HsmPinBlockError,
    NetworkTimeout,
    NetworkUnavailable,
    StoreError,
)
from posp.log import get_logger


class ResponseCode(StrEnum):
    """F39 with its meaning and the terminal's action (terminal-link §7, §8–§11).
    A member is a ``str``: it goes into messages and logs as its two characters."""

    meaning: str
    terminal_action: str

    def __new__(cls, value: str, meaning: str, terminal_action: str = "") -> ResponseCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        member.terminal_action = terminal_action
        return member

    APPROVED = "00", "Approved"
    INVALID_MERCHANT = "03", "Invalid merchant (42 unknown or not this terminal's)"
    DO_NOT_HONOUR = "05", "Do not honour"
    ERROR = "06", "Error (reversal reason after a card decline or a failure after sending)"
    INVALID_TRANSACTION = "12", "Invalid transaction (type not allowed, original gone)"
    INVALID_AMOUNT = "13", "Invalid amount"
    INVALID_CARD = "14", "Invalid card number"
    ORIGINAL_NOT_FOUND = "25", "Original transaction not found"
    FORMAT_ERROR = "30", "Format error (missing or malformed field)"
    EXPIRED_CARD = "33", "Expired card"
    FRAUD_KEEP_CARD = "34", "Suspected fraud, keep card"
    LOST_CARD = "41", "Lost card"
    STOLEN_CARD = "43", "Stolen card"
    FALLBACK_NOT_ALLOWED = "45", "Fallback not allowed (chip card swiped)"
    INSUFFICIENT_FUNDS = "51", "Insufficient funds"
    EXPIRED_CARD_54 = "54", "Expired card"
    INCORRECT_PIN = "55", "Incorrect PIN"
    NOT_PERMITTED_CARD = "57", "Not permitted to cardholder"
    NOT_PERMITTED_TERMINAL = "58", "Not permitted to terminal (disabled, dormant, frozen)"
    SUSPECTED_FRAUD = "59", "Suspected fraud (risk rule)"
    EXCEEDS_AMOUNT_LIMIT = "61", "Exceeds amount limit"
    AMOUNT_MISMATCH = "64", "Amount does not match the original"
    EXCEEDS_FREQUENCY = "65", "Exceeds frequency limit"
    PIN_TRIES_EXCEEDED = "75", "PIN tries exceeded"
    SIGN_IN_AGAIN = "77", "Batch mismatch or not signed in", "sign in again"
    ISSUER_UNAVAILABLE = "91", "Network / issuer unavailable", "retry later"
    DUPLICATE = "94", "Duplicate transaction (same terminal, batch and trace)", "new trace"
    MALFUNCTION = "96", "Switch malfunction (HSM or store failure)"
    TERMINAL_UNKNOWN = "97", "Terminal not registered"
    NO_ANSWER = "98", "No answer from the network within the time limit"
    PIN_BLOCK_ERROR = "99", "PIN block could not be processed", "sign in again"
    MAC_FAILED = "A0", "MAC verification failed", "reverse, sign in again"
    CURRENCY_MISMATCH = "A1", "Currency mismatch (transfer)"
    NO_SUCH_ACCOUNT = "A3", "No such account (transfer)"


_BY_TEXT: Final = {code.value: code for code in ResponseCode}


def response_code(text: str) -> ResponseCode | None:
    """The member for a two-character F39, None when it is not a known code."""
    return _BY_TEXT.get(text)


APPROVED: Final = ResponseCode.APPROVED
FORMAT_ERROR: Final = ResponseCode.FORMAT_ERROR
MALFUNCTION: Final = ResponseCode.MALFUNCTION

RC = ResponseCode
EXCEPTION_CODES: Final[tuple[tuple[type[BaseException], ResponseCode], ...]] = (
    (DecodeError, RC.FORMAT_ERROR),  # missing or malformed field
    (HsmPinBlockError, RC.PIN_BLOCK_ERROR),  # PIN block could not be processed
    (DuplicateTransaction, RC.DUPLICATE),  # same terminal, batch and trace journaled
    (NetworkTimeout, RC.NO_ANSWER),  # no answer from the network in time
    (NetworkUnavailable, RC.ISSUER_UNAVAILABLE),  # link down / not signed on
    (HsmError, RC.MALFUNCTION),  # HSM unreachable, timed out or refused
    (StoreError, RC.MALFUNCTION),  # database failure
    (TimeoutError, RC.MALFUNCTION),  # the request's own deadline passed
)

#: Codes that tell the terminal to sign in again (header digit 6 = 3).
SIGN_IN_AGAIN_CODES: Final = frozenset(
    code for code in ResponseCode if code.terminal_action.startswith(("sign in", "reverse, sign"))
)

#: Network F39 passed to the terminal as it is (terminal-link §7).
PASSED_THROUGH: Final = frozenset(
    {RC.APPROVED, RC.DO_NOT_HONOUR, RC.INVALID_TRANSACTION, RC.INVALID_AMOUNT}
    | {RC.INVALID_CARD, RC.ORIGINAL_NOT_FOUND, RC.EXPIRED_CARD, RC.LOST_CARD, RC.STOLEN_CARD}
    | {RC.INSUFFICIENT_FUNDS, RC.EXPIRED_CARD_54, RC.INCORRECT_PIN, RC.NOT_PERMITTED_CARD}
    | {RC.SUSPECTED_FRAUD, RC.EXCEEDS_AMOUNT_LIMIT, RC.FRAUD_KEEP_CARD}
    | {RC.AMOUNT_MISMATCH, RC.EXCEEDS_FREQUENCY, RC.PIN_TRIES_EXCEEDED}
    | {RC.ISSUER_UNAVAILABLE, RC.MALFUNCTION, RC.CURRENCY_MISMATCH, RC.NO_SUCH_ACCOUNT}
)
#: Network codes about the switch's own exchange with the network, not the card:
#: the terminal sees a switch malfunction.
SWITCH_SIDE: Final = frozenset(
    {RC.FORMAT_ERROR, RC.MAC_FAILED, RC.DUPLICATE, RC.SIGN_IN_AGAIN, RC.TERMINAL_UNKNOWN}
    | {RC.PIN_BLOCK_ERROR, RC.INVALID_MERCHANT, RC.NOT_PERMITTED_TERMINAL}
)


def terminal_code(network_code: str) -> ResponseCode:
    """The terminal's F39 for the network's F39: the card's answer passes through,
    the switch's own exchange problems are 96, anything else 05."""
    code = response_code(network_code)
    if code is not None and code in PASSED_THROUGH:
        return code
    return RC.MALFUNCTION if code is not None and code in SWITCH_SIDE else RC.DO_NOT_HONOUR


_log = get_logger("posp.pipeline.codes")
_logged_unmapped: set[type[BaseException]] = set()


def code_for(exc: BaseException) -> ResponseCode:
    """The response code for ``exc``; unmapped types answer 96 and log once."""
    for exc_type, code in EXCEPTION_CODES:
        if isinstance(exc, exc_type):
            return code
    if type(exc) not in _logged_unmapped:
        _logged_unmapped.add(type(exc))
        _log.error("unmapped exception answered 96", error_type=type(exc).__name__, exc_info=exc)
    return MALFUNCTION
