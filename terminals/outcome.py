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
