"""The routes table (principle 2: specs are tables).

A request is identified by (MTI, F3 digits 1-2, 60.1, 60.3) as in
terminal-link.md §3.  :func:`find_route` tries the exact key, then the key
without F3, then without F3 and 60.1 (a reversal carries its original's F3
and 60.1).  Each :class:`Route` is a name (the journal's ``txn_type`` and the
metrics label), the fields a request must carry, its MAC policy and a tuple of
async steps run in order; a step returns ``None`` to continue or a response
code to stop.  Adding a transaction type is adding a row; adding the network
part of a transaction is appending steps (``posp.pipeline.financial``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from posp.pipeline import batch, checks, financial, reversal, signin
from posp.pipeline.journal import journal_pending

if TYPE_CHECKING:
    from posp.iso8583 import Message
    from posp.iso8583.fields import Field60
    from posp.pipeline.context import TxnContext

Step = Callable[["TxnContext"], Awaitable[str | None]]


class MacPolicy(Enum):
    NONE = "none"  # management messages
    REQUIRED = "required"  # financial requests and their answers
    SETTLEMENT = "settlement"  # only when settings.settlement.mac_on_settlement


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    steps: tuple[Step, ...]
    required: frozenset[int]
    any_of: tuple[frozenset[int], ...] = ()  # at least one field of each set
    mac: MacPolicy = MacPolicy.NONE
    financial: bool = False  # a card transaction: journaled with dedupe, answers carry 15
    reversible: bool = False
    direction: str = "original"


# --- step sequences ------------------------------------------------------------

#: Every financial request: who is it, may it transact, are its keys and batch
#: current, is it authentic; then the journal's pending entry (94 on a duplicate).
FINANCIAL_CHECKS: Final[tuple[Step, ...]] = (
    checks.load_terminal,
    checks.check_merchant,
    checks.check_enabled,
    checks.check_working_keys,
    checks.validate_fields,
    checks.check_batch,
    checks.verify_mac,
)
FINANCIAL: Final = (*FINANCIAL_CHECKS, checks.check_amount, journal_pending, *financial.FORWARD)
REVERSAL: Final = (
    checks.load_terminal,
    checks.check_merchant,
    checks.check_enabled,
    checks.check_working_keys,
    reversal.check_reversible_original,  # 12 before 30: a balance reversal has no F4
    checks.validate_fields,
    checks.check_batch,
    # Journals the 0400 before its MAC check (HSM) and checks it then; a repeated 0400
    # is answered 00, not 94.
    *financial.REVERSE,
)
SETTLEMENT_STEPS: Final = (*FINANCIAL_CHECKS, *batch.SETTLE)
UPLOAD_STEPS: Final = (*FINANCIAL_CHECKS, *batch.UPLOAD)
UPLOAD_END_STEPS: Final = (
    *(batch.check_upload_end_batch if s is checks.check_batch else s for s in FINANCIAL_CHECKS),
    *batch.UPLOAD_END,
)

_CARD: Final = (frozenset({2, 35}),)
_BASE: Final = frozenset({3, 11, 22, 25, 41, 42, 49, 60})
_AMOUNT: Final = _BASE | {4}
_M: Final = MacPolicy.REQUIRED


def _financial(name: str, required: frozenset[int], reversible: bool) -> Route:
    return Route(name, FINANCIAL, required, _CARD, _M, financial=True, reversible=reversible)


SIGN_IN: Final = Route(
    "sign_in",
    (
        checks.load_terminal,
        checks.check_merchant,
        checks.check_enabled,
        checks.validate_fields,
        signin.check_device_serial,
        signin.issue_working_keys,
    ),
    frozenset({11, 41, 42, 60}),
)
SIGN_OFF: Final = Route(
    "sign_off",
    (checks.load_terminal, checks.check_merchant, checks.validate_fields, signin.sign_off),
    frozenset({11, 41, 42, 60}),
)
ECHO: Final = Route(
    "echo", (checks.load_terminal, checks.validate_fields, signin.echo), frozenset({11, 41, 60})
)

#: (MTI, F3[0:2] or None, 60.1 or None, 60.3) -> route.
ROUTES: Final = MappingProxyType(
    {
        ("0800", None, "00", "001"): SIGN_IN,
        ("0800", None, "00", "003"): SIGN_IN,
        ("0800", None, "00", "004"): SIGN_IN,
        ("0820", None, "00", "002"): SIGN_OFF,
        ("0820", None, "00", "301"): ECHO,
        ("0200", "31", "01", "000"): _financial("balance", _BASE, reversible=False),
        ("0200", "00", "22", "000"): _financial("purchase", _AMOUNT, reversible=True),
        ("0200", "20", "23", "000"): _financial("purchase_void", _AMOUNT | {37, 61}, True),
        ("0220", "20", "25", "000"): _financial("refund", _AMOUNT | {37, 61}, reversible=False),
        ("0100", "03", "10", "000"): _financial("preauth", _AMOUNT, reversible=True),
        ("0100", "20", "11", "000"): _financial("preauth_void", _AMOUNT | {38, 61}, True),
        ("0200", "00", "20", "000"): _financial("completion", _AMOUNT | {38, 61}, True),
        ("0200", "20", "21", "000"): _financial("completion_void", _AMOUNT | {37, 61}, True),
        ("0400", None, None, "000"): Route(
            "reversal",
            REVERSAL,
            frozenset({3, 4, 11, 25, 41, 42, 49, 60}),
            (),
            _M,
            financial=True,
            direction="reversal",
        ),
        ("0500", None, "00", "201"): Route(
            "settlement",
            SETTLEMENT_STEPS,
            frozenset({11, 41, 42, 48, 49, 60}),
            mac=MacPolicy.SETTLEMENT,
        ),
        ("0320", None, "00", "201"): Route(
            "batch_upload",
            UPLOAD_STEPS,
            frozenset({11, 41, 42, 48, 60}),
            mac=MacPolicy.SETTLEMENT,
        ),
        ("0320", None, "00", "202"): Route(
            "batch_upload_end",
            UPLOAD_END_STEPS,
            frozenset({11, 41, 42, 48, 60}),
            mac=MacPolicy.SETTLEMENT,
        ),
        ("0320", None, "00", "207"): Route(
            "batch_upload_end",
            UPLOAD_END_STEPS,
            frozenset({11, 41, 42, 48, 60}),
            mac=MacPolicy.SETTLEMENT,
        ),
    }
)


def find_route(message: Message, f60: Field60) -> Route | None:
    """The route for ``message``, or None (answered 12, invalid transaction)."""
    f3 = message.get(3)
    prefix = f3[:2] if isinstance(f3, str) else None
    for key in (
        (message.mti, prefix, f60.msg_type, f60.net_code),
        (message.mti, None, f60.msg_type, f60.net_code),
        (message.mti, None, None, f60.net_code),
    ):
        route = ROUTES.get(key)
        if route is not None:
            return route
    return None
