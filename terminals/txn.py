"""The terminal's transaction table (terminal-link.md §3), as data.

Each row says how a request of that kind is identified on the wire and how the
terminal treats it.  Invariants: reversible kinds are exactly the rows marked
"yes" in the spec's table; refunds, balance inquiries and management messages
are never reversed; every financial row carries a MAC.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class TxnKind(Enum):
    """Every message type a simulated terminal originates."""

    SIGN_IN = "sign_in"
    SIGN_OFF = "sign_off"
    ECHO = "echo"
    BALANCE = "balance"
    PURCHASE = "purchase"
    PURCHASE_VOID = "purchase_void"
    REFUND = "refund"
    PREAUTH = "preauth"
    PREAUTH_VOID = "preauth_void"
    COMPLETION = "completion"
    COMPLETION_VOID = "completion_void"
    BENEFICIARY_CHECK = "beneficiary_check"
    TRANSFER = "transfer"
    TRANSFER_VOID = "transfer_void"
    REVERSAL = "reversal"
    SETTLEMENT = "settlement"
    BATCH_UPLOAD = "batch_upload"
    BATCH_UPLOAD_END = "batch_upload_end"
    # Terminal management (terminal-link §8, §10); 60.3 says which step.
    MANAGEMENT_REQUEST = "management_request"  # 0800 360/364/361, 370/371, 380/381
    MANAGEMENT_REPORT = "management_report"  # 0820 362, 372, 382
    SCRIPT_ADVICE = "script_advice"
    TC_UPLOAD = "tc_upload"


@dataclass(frozen=True, slots=True)
class TxnSpec:
    """How one transaction kind is built.  ``proc_code`` is F3 (None = absent),
    ``msg_type`` is 60.1, ``condition`` is F25 (None = absent)."""

    mti: str
    proc_code: str | None
    msg_type: str
    condition: str | None
    mac: bool
    reversible: bool
    financial: bool


TXN_TABLE: dict[TxnKind, TxnSpec] = {
    TxnKind.SIGN_IN: TxnSpec("0800", None, "00", None, False, False, False),
    TxnKind.SIGN_OFF: TxnSpec("0820", None, "00", None, False, False, False),
    TxnKind.ECHO: TxnSpec("0820", None, "00", None, False, False, False),
    TxnKind.BALANCE: TxnSpec("0200", "310000", "01", "00", True, False, True),
    TxnKind.PURCHASE: TxnSpec("0200", "000000", "22", "00", True, True, True),
    TxnKind.PURCHASE_VOID: TxnSpec("0200", "200000", "23", "00", True, True, True),
    TxnKind.REFUND: TxnSpec("0220", "200000", "25", "00", True, False, True),
    TxnKind.PREAUTH: TxnSpec("0100", "030000", "10", "06", True, True, True),
    TxnKind.PREAUTH_VOID: TxnSpec("0100", "200000", "11", "06", True, True, True),
    TxnKind.COMPLETION: TxnSpec("0200", "000000", "20", "06", True, True, True),
    TxnKind.COMPLETION_VOID: TxnSpec("0200", "200000", "21", "06", True, True, True),
    TxnKind.BENEFICIARY_CHECK: TxnSpec("0100", "330000", "01", "00", True, False, True),
    TxnKind.TRANSFER: TxnSpec("0200", "400000", "49", "66", True, True, True),
    TxnKind.TRANSFER_VOID: TxnSpec("0200", "200000", "50", "66", True, True, True),
    TxnKind.REVERSAL: TxnSpec("0400", None, "", None, True, False, True),
    TxnKind.SETTLEMENT: TxnSpec("0500", None, "00", None, False, False, False),
    TxnKind.BATCH_UPLOAD: TxnSpec("0320", None, "00", None, False, False, False),
    TxnKind.BATCH_UPLOAD_END: TxnSpec("0320", None, "00", None, False, False, False),
    TxnKind.MANAGEMENT_REQUEST: TxnSpec("0800", None, "00", None, False, False, False),
    TxnKind.MANAGEMENT_REPORT: TxnSpec("0820", None, "00", None, False, False, False),
    TxnKind.SCRIPT_ADVICE: TxnSpec("0620", None, "00", None, True, False, False),
    TxnKind.TC_UPLOAD: TxnSpec("0320", None, "00", None, False, False, False),
}

# Network-management codes (60.3) of management messages.
NET_CODE_FINANCIAL = "000"
NET_CODE_SIGN_OFF = "002"
NET_CODE_SETTLEMENT = "201"
NET_CODE_UPLOAD_UNBALANCED = "202"
NET_CODE_UPLOAD_BALANCED = "207"
NET_CODE_ECHO = "301"
NET_CODE_TC_BALANCED = "203"
NET_CODE_TC_UNBALANCED = "205"
NET_CODE_SCRIPT_ADVICE = "951"
SIGN_IN_VARIANTS = ("001", "003", "004")

# Kinds whose approval is a debit / credit in the settlement totals.
DEBIT_KINDS = frozenset({TxnKind.PURCHASE, TxnKind.COMPLETION, TxnKind.TRANSFER})
CREDIT_KINDS = frozenset({TxnKind.REFUND})
# Void kind -> the kind it cancels.
VOID_TARGETS: dict[TxnKind, TxnKind] = {
    TxnKind.PURCHASE_VOID: TxnKind.PURCHASE,
    TxnKind.PREAUTH_VOID: TxnKind.PREAUTH,
    TxnKind.COMPLETION_VOID: TxnKind.COMPLETION,
    TxnKind.TRANSFER_VOID: TxnKind.TRANSFER,
}

# Response codes after which the terminal must sign in again (terminal-link §7).
RESIGN_CODES = frozenset({"77", "99", "A0"})
APPROVED = "00"
