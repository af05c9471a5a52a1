"""What the terminal concluded from one request's fate.

Invariant: ``approved`` is true only for a response with 39 = ``00`` whose
MAC verified (where one is due); every other fate is not approved.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from posp.iso8583.message import Message
from terminals.txn import TxnKind


class Event(Enum):
    """How the request ended."""

    RESPONSE = "response"  # an answer arrived and was accepted
    TIMEOUT = "timeout"  # no answer within the response timeout
    COMMS_ERROR = "comms_error"  # connection broke (after sending, or could not send)
    MAC_FAILURE = "mac_failure"  # the answer's MAC did not verify
    BAD_RESPONSE = "bad_response"  # undecodable or not the answer to this request


@dataclass(frozen=True, slots=True)
class Outcome:
    """The typed result of ``TerminalMachine.accept`` / ``on_timeout`` / ``on_comms_error``.

    ``balanced`` is set for settlements (both classes balanced);
    ``detail`` explains failures that have no response code (e.g. a CV mismatch)."""

    kind: TxnKind
    trace: str
    event: Event
    response_code: str | None = None
    approved: bool = False
    message: Message | None = None
    needs_sign_in: bool = False
    reversal_queued: bool = False
    balanced: bool | None = None
    detail: str = ""


class OutcomeClass(Enum):
    """What a load tester counts: how one exchange ended, from the fleet's side."""

    APPROVED = "approved"  # answered 00 and every check passed
    DECLINED = "declined"  # answered with another code (counted by code)
    TIMEOUT = "timeout"  # no answer within the response timeout
    CONNECTION_ERROR = "connection_error"  # could not connect, or the connection broke
    MAC_FAILURE = "mac_failure"  # answered, but the answer's MAC did not verify
    PROTOCOL_ERROR = "protocol_error"  # answered with something unusable


#: Classes whose exchange got an answer the terminal could use: the latency
#: percentiles of a run are over these only (a refused connect is not "fast").
ANSWERED_CLASSES = frozenset({OutcomeClass.APPROVED, OutcomeClass.DECLINED})
#: Classes that count as errors (the error rate of ``--fail-on``).
ERROR_CLASSES = frozenset(set(OutcomeClass) - ANSWERED_CLASSES)

_EVENT_CLASSES = {
    Event.TIMEOUT: OutcomeClass.TIMEOUT,
    Event.COMMS_ERROR: OutcomeClass.CONNECTION_ERROR,
    Event.MAC_FAILURE: OutcomeClass.MAC_FAILURE,
    Event.BAD_RESPONSE: OutcomeClass.PROTOCOL_ERROR,
}


def classify(outcome: Outcome) -> OutcomeClass:
    """The class of ``outcome``.  An answer of ``00`` the terminal could not
    apply (e.g. a key block whose check value does not match) is a protocol
    error, not an approval and not a decline."""
    if outcome.event is not Event.RESPONSE:
        return _EVENT_CLASSES[outcome.event]
    if outcome.approved:
        return OutcomeClass.APPROVED
    if outcome.response_code in (None, "00"):
        return OutcomeClass.PROTOCOL_ERROR
    return OutcomeClass.DECLINED
