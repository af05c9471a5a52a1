"""The routes table (principle 2: specs are tables): each transaction type's row
(``posp.txn``) with the steps that handle it.

A request is identified by (MTI, F3 digits 1-2, 60.1, 60.3) as in
terminal-link.md §3 — the rows' ``keys``.  :func:`find_route` tries the exact
key, then the key without F3, then without F3 and 60.1 (a reversal carries its
original's F3 and 60.1).  A step returns ``None`` to continue or a response
code to stop.  Adding a transaction type is adding its row in ``posp.txn`` and
its steps in :data:`STEPS`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from posp.pipeline import (
    batch,
    cardsec,
    checks,
    chip,
    chipadvice,
    forward,
    management,
    originals,
    reversal,
    signin,
    transfer,
)
from posp.pipeline.journal import journal_pending
from posp.pipeline.lifecycle import check_lifecycle
from posp.pipeline.premac import start_network_mac
from posp.pipeline.risk import check_risk, hold_velocity
from posp.pipeline.route import Route, Step
from posp.txn import TXN_TYPES, RouteKey, TxnType

if TYPE_CHECKING:
    from posp.iso8583 import Message
    from posp.iso8583.fields import Field60
    from posp.pipeline.codes import ResponseCode
    from posp.pipeline.context import TxnContext


async def start_early_hsm_work(ctx: TxnContext) -> ResponseCode | None:
    """Start the PIN translation (CA) and the network request's MAC now, so that
    they go to the HSM in the same write as the terminal MAC check that follows;
    their outcomes count only once that check has passed."""
    if checks.mac_required(ctx) and isinstance(ctx.message.get(64), bytes):
        cardsec.start_pin_translation(ctx)
        start_network_mac(ctx)
    return None


# --- step sequences ------------------------------------------------------------

#: Who is it, may it transact, are its keys and batch current, is it authentic.
CHECKS: Final[tuple[Step, ...]] = (
    checks.load_terminal,
    management.load_view,
    checks.check_merchant,
    checks.check_enabled,
    checks.check_working_keys,
    checks.validate_fields,
    checks.check_batch,
)
AUTHENTIC: Final[tuple[Step, ...]] = (*CHECKS, checks.verify_mac)
#: Card transactions: the checks, the early HSM work beside the MAC check, the
#: journal's pending entry (94 on a duplicate; the write-ahead of the network
#: request; the risk rules and their velocity hold just before it, the hold kept
#: with the entry just after it), then: link signed on (else 91 at once) → clear track data (TDK) →
#: the original a void/refund/completion names (25 / 12 / 64) → PIN TPK→ZPK (99) →
#: send with a deadline; answer, decline or 98 with a queued 0420.
FINANCIAL: Final[tuple[Step, ...]] = (
    *CHECKS,
    start_early_hsm_work,
    checks.verify_mac,
    management.record_identity,
    check_lifecycle,
    checks.check_amount,
    transfer.read_receiving_card,
    management.check_caps,
    chip.check_chip_data,
    check_risk,
    journal_pending,
    hold_velocity,
    forward.require_link,
    cardsec.decrypt_tracks,
    chip.check_fallback,
    originals.find_original,
    cardsec.translate_pin,
    forward.forward,
)
#: 0400: the checks (12 before 30: a balance reversal has no F4), the 0400
#: journaled before its MAC check (a repeat is noted, not refused; an HSM outage
#: keeps it for later), then the original reversed once through the SAF queue.
REVERSAL: Final[tuple[Step, ...]] = (
    checks.load_terminal,
    management.load_view,
    checks.check_merchant,
    checks.check_enabled,
    checks.check_working_keys,
    reversal.check_reversible_original,
    checks.validate_fields,
    checks.check_batch,
    reversal.journal_reversal,
    reversal.verify_or_defer,
    reversal.reverse_original,
)
#: The management dialogues: the terminal, its merchant, enabled, the fields (no MAC).
MANAGED: Final[tuple[Step, ...]] = (
    checks.load_terminal,
    management.load_view,
    checks.check_merchant,
    checks.check_enabled,
    checks.validate_fields,
)
UPLOAD_END: Final[tuple[Step, ...]] = (
    *(batch.check_upload_end_batch if s is checks.check_batch else s for s in AUTHENTIC),
    *batch.UPLOAD_END,
)

#: Each transaction type's steps (its row is in ``posp.txn``).
STEPS: Final[dict[TxnType, tuple[Step, ...]]] = {
    TxnType.SIGN_IN: (
        *MANAGED,
        signin.check_device_serial,
        management.record_identity,
        check_lifecycle,
        signin.issue_working_keys,
    ),
    TxnType.SIGN_OFF: (
        checks.load_terminal,
        management.load_view,
        checks.check_merchant,
        checks.validate_fields,
        signin.sign_off,
    ),
    TxnType.ECHO: (checks.load_terminal, management.load_view, checks.validate_fields, signin.echo),
    TxnType.BALANCE: FINANCIAL,
    TxnType.PURCHASE: FINANCIAL,
    TxnType.PURCHASE_VOID: FINANCIAL,
    TxnType.REFUND: FINANCIAL,
    TxnType.PREAUTH: FINANCIAL,
    TxnType.PREAUTH_VOID: FINANCIAL,
    TxnType.COMPLETION: FINANCIAL,
    TxnType.COMPLETION_VOID: FINANCIAL,
    TxnType.BENEFICIARY_CHECK: FINANCIAL,
    TxnType.TRANSFER: FINANCIAL,
    TxnType.TRANSFER_VOID: FINANCIAL,
    TxnType.REVERSAL: REVERSAL,
    TxnType.SETTLEMENT: (*AUTHENTIC, *batch.SETTLE),
    TxnType.BATCH_UPLOAD: (*AUTHENTIC, *batch.UPLOAD),
    TxnType.BATCH_UPLOAD_END: UPLOAD_END,
    TxnType.PARAM_DOWNLOAD: (*MANAGED, management.download_params),
    TxnType.PARAM_DOWNLOAD_END: (*MANAGED, management.end_params),
    TxnType.STATUS_UPLOAD: (*MANAGED, management.status_upload),
    TxnType.CAPK_LIST: (*MANAGED, management.list_ic),
    TxnType.CAPK_DOWNLOAD: (*MANAGED, management.download_ic),
    TxnType.CAPK_DOWNLOAD_END: (*MANAGED, management.end_ic),
    TxnType.AID_LIST: (*MANAGED, management.list_ic),
    TxnType.AID_DOWNLOAD: (*MANAGED, management.download_ic),
    TxnType.AID_DOWNLOAD_END: (*MANAGED, management.end_ic),
    TxnType.SCRIPT_ADVICE: (*AUTHENTIC, chipadvice.record_script_advice),
    TxnType.TC_UPLOAD: (*AUTHENTIC, chipadvice.record_tc),
}

#: Every route by transaction type.
BY_TYPE: Final = MappingProxyType({t: Route(row, STEPS[t]) for t, row in TXN_TYPES.items()})
#: (MTI, F3[0:2] or None, 60.1 or None, 60.3) -> route.
ROUTES: Final[MappingProxyType[RouteKey, Route]] = MappingProxyType(
    {key: BY_TYPE[t] for t, row in TXN_TYPES.items() for key in row.keys}
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
