"""The one table mapping exceptions to terminal response codes (field 39).

Principle 4: a decline is control flow (a step returns a code); an exception
is a fault, translated here and only here.  The table is searched in order,
so a subclass must come before its base.  Anything unmapped answers ``96``
and is logged once per exception type (with its traceback), so a new fault
is visible without flooding the log.
"""

from __future__ import annotations

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

APPROVED: Final = "00"
FORMAT_ERROR: Final = "30"
MALFUNCTION: Final = "96"

EXCEPTION_CODES: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (DecodeError, FORMAT_ERROR),  # missing or malformed field
    (HsmPinBlockError, "99"),  # PIN block could not be processed: sign in again
    (DuplicateTransaction, "94"),  # same terminal, batch and trace already journaled
    (NetworkTimeout, "98"),  # no answer from the network in time
    (NetworkUnavailable, "91"),  # link down / not signed on
    (HsmError, MALFUNCTION),  # HSM unreachable, timed out or refused
    (StoreError, MALFUNCTION),  # database failure
    (TimeoutError, MALFUNCTION),  # the request's own deadline passed
)

#: Codes that tell the terminal to sign in again (header digit 6 = 3).
SIGN_IN_AGAIN_CODES: Final = frozenset({"77", "99", "A0"})

_log = get_logger("posp.pipeline.codes")
_logged_unmapped: set[type[BaseException]] = set()


def code_for(exc: BaseException) -> str:
    """The response code for ``exc``; unmapped types answer 96 and log once."""
    for exc_type, code in EXCEPTION_CODES:
        if isinstance(exc, exc_type):
            return code
    if type(exc) not in _logged_unmapped:
        _logged_unmapped.add(type(exc))
        _log.error("unmapped exception answered 96", error_type=type(exc).__name__, exc_info=exc)
    return MALFUNCTION
