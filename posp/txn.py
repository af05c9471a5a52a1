"""The transaction-type table: one frozen row per type, everything that varies by
type (design.md, "one row per transaction type").

A row says how a terminal request of the type is recognised (routing keys:
MTI, F3 digits 1-2, 60.1, 60.3), what it must carry, its MAC policy, where it
goes upstream (network MTI), which original it acts on and how that original is
found, what the network's approval and a later reversal do to that original,
whether terminals may reverse it, whether its network MAC can be taken early,
and how settlement counts it.  The pipeline attaches steps to rows
(``posp.pipeline.routes``); the network mapping, the original finders, the
reversal, the early MAC and the store's settlement sums read the rows.  Adding
a transaction type is adding a row here plus its steps.

Pure data: imports nothing from the rest of the switch but the journal's state
names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Final

from posp.iso8583.tlv import F55Use
from posp.store.api import APPROVED, COMPLETED, VOIDED


class TxnType(StrEnum):
    """A terminal transaction type; its value is the journal's ``txn_type`` and the
    metrics label."""

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
    # Terminal management (terminal-link §8, §10)
    PARAM_DOWNLOAD = "param_download"
    PARAM_DOWNLOAD_END = "param_download_end"
    STATUS_UPLOAD = "status_upload"
    CAPK_LIST = "capk_list"
    CAPK_DOWNLOAD = "capk_download"
    CAPK_DOWNLOAD_END = "capk_download_end"
    AID_LIST = "aid_list"
    AID_DOWNLOAD = "aid_download"
    AID_DOWNLOAD_END = "aid_download_end"

    # Chip cards (terminal-link §8)
    SCRIPT_ADVICE = "script_advice"
    TC_UPLOAD = "tc_upload"


class CapKind(StrEnum):
    """Which single-transaction cap of the terminal's parameters (terminal-link
    §10 keys 37-39) limits a type; over it the switch answers 61."""

    PURCHASE = "purchase"
    REFUND = "refund"
    TRANSFER = "transfer"


class MacPolicy(Enum):
    NONE = "none"  # management messages
    REQUIRED = "required"  # financial requests and their answers
    SETTLEMENT = "settlement"  # only when settings.settlement.mac_on_settlement


class OriginalLookup(Enum):
    """How a request finds the original it acts on (``posp.pipeline.originals``)."""

    NONE = "none"
    CURRENT_BATCH_TRACE = "current_batch_trace"  # voids: F61 trace in the open batch
    OPEN_PREAUTH = "open_preauth"  # pre-auth void, completion: F38 + 61.3 + card
    RRN = "rrn"  # refund: F37 + 61.3 at this merchant, amount reserved
    REVERSED_TRACE = "reversed_trace"  # reversal: own F11 in 60.2's batch, type by 60.1


class NetworkAccounts(Enum):
    """Which accounts the network request names in F102 / F103 (network-link §8)."""

    NONE = "none"
    PAYER_AND_PAYEE = "payer_and_payee"  # transfer: F102 = the card, F103 = F62's card
    PAYEE = "payee"  # beneficiary check: the card itself is the receiving account (F103)


class Settlement(Enum):
    """How an approved entry counts in the batch totals (terminal-link §3.3)."""

    NONE = "none"
    DEBIT = "debit"
    CREDIT = "credit"


#: (MTI, F3[0:2] or None, 60.1 or None, 60.3)
RouteKey = tuple[str, str | None, str | None, str]
#: A state change of an original: (from state, to state).
Transition = tuple[str, str]

_CARD: Final = (frozenset({2, 35}),)
_BASE: Final = frozenset({3, 11, 22, 25, 41, 42, 49, 60})
_AMOUNT: Final = _BASE | {4}
_MANAGEMENT: Final = frozenset({11, 41, 42, 60})
_BATCH: Final = frozenset({11, 41, 42, 48, 60})


@dataclass(frozen=True, slots=True)
class TxnRow:
    """Everything about one transaction type (see the module docstring)."""

    txn_type: TxnType
    keys: tuple[RouteKey, ...]
    required: frozenset[int]
    any_of: tuple[frozenset[int], ...] = ()  # at least one field of each set
    mac: MacPolicy = MacPolicy.NONE
    #: A card transaction: journaled with dedupe; answers carry 15, 44, 63.
    card: bool = False
    direction: str = "original"  # the journal's direction (reversal for 0400)
    msg_type: str | None = None  # 60.1 on the terminal link (and in network F60)
    network_mti: str | None = None  # None: never goes upstream itself
    moves_money: bool = False  # upstream undo (0420) when its outcome is unknown
    original: tuple[TxnType, ...] = ()  # types of original it acts on
    lookup: OriginalLookup = OriginalLookup.NONE
    on_approval: Transition | None = None  # the original's change when approved
    restores: Transition | None = None  # the original's change when this is reversed
    reversible: bool = False  # terminals reverse it (0400); the switch may too
    early_mac: bool = False  # its network MAB is known before the journal (premac)
    settlement: Settlement = Settlement.NONE
    cap: CapKind | None = None  # the terminal's single cap that limits it (61 above)
    #: The receiving card travels in F62 usage 10 (a transfer; 30 when malformed).
    receiving_card_in_f62: bool = False
    network_accounts: NetworkAccounts = NetworkAccounts.NONE
    #: The risk rules check it (terminal-link §11, ``posp.pipeline.risk``).
    risk_checked: bool = False
    #: The answer's F63 carries 63.2 = the masked holder name from the network.
    answer_names_holder: bool = False
    #: The F55 use whose mandatory tags its chip data must carry; on a first
    #: presentment a swiped chip card also needs 60.5 = 2 (``posp.pipeline.chip``).
    chip: F55Use | None = None

    @property
    def name(self) -> str:
        return self.txn_type.value

    @property
    def references_original(self) -> bool:
        """Its network request carries F90 (a void, refund, completion)."""
        return self.lookup in (
            OriginalLookup.CURRENT_BATCH_TRACE,
            OriginalLookup.OPEN_PREAUTH,
            OriginalLookup.RRN,
        )


def _card(
    txn_type: TxnType,
    key: RouteKey,
    required: frozenset[int],
    *,
    network_mti: str,
    **rest: object,
) -> TxnRow:
    assert key[2] is not None
    return TxnRow(
        txn_type,
        (key,),
        required,
        _CARD,
        MacPolicy.REQUIRED,
        card=True,
        msg_type=key[2],
        network_mti=network_mti,
        **rest,  # type: ignore[arg-type]
    )


_ROWS: Final = (
    TxnRow(
        TxnType.SIGN_IN,
        (("0800", None, "00", "001"), ("0800", None, "00", "003"), ("0800", None, "00", "004")),
        _MANAGEMENT,
    ),
    TxnRow(TxnType.SIGN_OFF, (("0820", None, "00", "002"),), _MANAGEMENT),
    TxnRow(TxnType.ECHO, (("0820", None, "00", "301"),), frozenset({11, 41, 60})),
    _card(
        TxnType.BALANCE,
        ("0200", "31", "01", "000"),
        _BASE,
        network_mti="0200",
        early_mac=True,
        chip=F55Use.BALANCE,
    ),
    _card(
        TxnType.PURCHASE,
        ("0200", "00", "22", "000"),
        _AMOUNT,
        network_mti="0200",
        risk_checked=True,
        moves_money=True,
        reversible=True,
        early_mac=True,
        settlement=Settlement.DEBIT,
        cap=CapKind.PURCHASE,
        chip=F55Use.PURCHASE,
    ),
    _card(
        TxnType.PURCHASE_VOID,
        ("0200", "20", "23", "000"),
        _AMOUNT | {37, 61},
        network_mti="0200",
        moves_money=True,
        original=(TxnType.PURCHASE,),
        lookup=OriginalLookup.CURRENT_BATCH_TRACE,
        on_approval=(APPROVED, VOIDED),
        restores=(VOIDED, APPROVED),
        reversible=True,
    ),
    _card(
        TxnType.REFUND,
        ("0220", "20", "25", "000"),
        _AMOUNT | {37, 61},
        network_mti="0220",
        risk_checked=True,
        moves_money=True,
        original=(TxnType.PURCHASE, TxnType.COMPLETION),
        lookup=OriginalLookup.RRN,
        settlement=Settlement.CREDIT,
        cap=CapKind.REFUND,
    ),
    _card(
        TxnType.PREAUTH,
        ("0100", "03", "10", "000"),
        _AMOUNT,
        network_mti="0100",
        risk_checked=True,
        moves_money=True,
        reversible=True,
        early_mac=True,
        chip=F55Use.PRE_AUTH,
    ),
    _card(
        TxnType.PREAUTH_VOID,
        ("0100", "20", "11", "000"),
        _AMOUNT | {38, 61},
        network_mti="0100",
        moves_money=True,
        original=(TxnType.PREAUTH,),
        lookup=OriginalLookup.OPEN_PREAUTH,
        on_approval=(APPROVED, VOIDED),
        restores=(VOIDED, APPROVED),
        reversible=True,
    ),
    _card(
        TxnType.COMPLETION,
        ("0200", "00", "20", "000"),
        _AMOUNT | {38, 61},
        network_mti="0200",
        risk_checked=True,
        moves_money=True,
        original=(TxnType.PREAUTH,),
        lookup=OriginalLookup.OPEN_PREAUTH,
        on_approval=(APPROVED, COMPLETED),
        restores=(COMPLETED, APPROVED),
        reversible=True,
        settlement=Settlement.DEBIT,
    ),
    _card(
        TxnType.COMPLETION_VOID,
        ("0200", "20", "21", "000"),
        _AMOUNT | {37, 61},
        network_mti="0200",
        moves_money=True,
        original=(TxnType.COMPLETION,),
        lookup=OriginalLookup.CURRENT_BATCH_TRACE,
        on_approval=(APPROVED, VOIDED),
        restores=(VOIDED, APPROVED),
        reversible=True,
    ),
    _card(
        TxnType.BENEFICIARY_CHECK,
        ("0100", "33", "01", "000"),
        _BASE,
        network_mti="0100",
        network_accounts=NetworkAccounts.PAYEE,
        answer_names_holder=True,
    ),
    _card(
        TxnType.TRANSFER,
        ("0200", "40", "49", "000"),
        _AMOUNT | {62},
        network_mti="0200",
        risk_checked=True,
        cap=CapKind.TRANSFER,
        moves_money=True,
        reversible=True,
        settlement=Settlement.DEBIT,
        receiving_card_in_f62=True,
        network_accounts=NetworkAccounts.PAYER_AND_PAYEE,
    ),
    _card(
        TxnType.TRANSFER_VOID,
        ("0200", "20", "50", "000"),
        _AMOUNT | {37, 61},
        network_mti="0200",
        moves_money=True,
        original=(TxnType.TRANSFER,),
        lookup=OriginalLookup.CURRENT_BATCH_TRACE,
        on_approval=(APPROVED, VOIDED),
        restores=(VOIDED, APPROVED),
        reversible=True,
    ),
    TxnRow(
        TxnType.REVERSAL,
        (("0400", None, None, "000"),),
        frozenset({3, 4, 11, 25, 41, 42, 49, 60}),
        mac=MacPolicy.REQUIRED,
        card=True,
        direction="reversal",
        lookup=OriginalLookup.REVERSED_TRACE,
    ),
    TxnRow(
        TxnType.SETTLEMENT,
        (("0500", None, "00", "201"),),
        frozenset({11, 41, 42, 48, 49, 60}),
        mac=MacPolicy.SETTLEMENT,
    ),
    TxnRow(TxnType.BATCH_UPLOAD, (("0320", None, "00", "201"),), _BATCH, mac=MacPolicy.SETTLEMENT),
    TxnRow(
        TxnType.BATCH_UPLOAD_END,
        (("0320", None, "00", "202"), ("0320", None, "00", "207")),
        _BATCH,
        mac=MacPolicy.SETTLEMENT,
    ),
    # Terminal management dialogues (60.1 00; no MAC, as sign-in).
    TxnRow(
        TxnType.PARAM_DOWNLOAD,
        (("0800", None, "00", "360"), ("0800", None, "00", "364")),
        _MANAGEMENT,
    ),
    TxnRow(TxnType.PARAM_DOWNLOAD_END, (("0800", None, "00", "361"),), _MANAGEMENT),
    TxnRow(TxnType.STATUS_UPLOAD, (("0820", None, "00", "362"),), _MANAGEMENT | {62}),
    TxnRow(TxnType.CAPK_LIST, (("0820", None, "00", "372"),), _MANAGEMENT | {62}),
    TxnRow(TxnType.CAPK_DOWNLOAD, (("0800", None, "00", "370"),), _MANAGEMENT | {62}),
    TxnRow(TxnType.CAPK_DOWNLOAD_END, (("0800", None, "00", "371"),), _MANAGEMENT),
    TxnRow(TxnType.AID_LIST, (("0820", None, "00", "382"),), _MANAGEMENT | {62}),
    TxnRow(TxnType.AID_DOWNLOAD, (("0800", None, "00", "380"),), _MANAGEMENT | {62}),
    TxnRow(TxnType.AID_DOWNLOAD_END, (("0800", None, "00", "381"),), _MANAGEMENT),
    # Chip cards (terminal-link §8): the card's script results, stored against the
    # original (F61) and forwarded as a durable advice; the TC of an approved chip
    # transaction, uploaded after settlement under the original's trace (F11).
    TxnRow(
        TxnType.SCRIPT_ADVICE,
        (("0620", None, "00", "951"),),
        frozenset({11, 41, 42, 55, 60, 61}),
        mac=MacPolicy.REQUIRED,
        direction="advice",
        original=(TxnType.PURCHASE, TxnType.PREAUTH, TxnType.BALANCE),
        lookup=OriginalLookup.CURRENT_BATCH_TRACE,
        chip=F55Use.SCRIPT_ADVICE,
    ),
    TxnRow(
        TxnType.TC_UPLOAD,
        (("0320", None, "00", "203"), ("0320", None, "00", "205")),
        frozenset({3, 4, 11, 22, 41, 42, 55, 60}),
        mac=MacPolicy.SETTLEMENT,
        direction="tc",
        original=(TxnType.PURCHASE, TxnType.PREAUTH),
        chip=F55Use.TC_UPLOAD,
    ),
)

#: Every transaction type's row.
TXN_TYPES: Final = MappingProxyType({row.txn_type: row for row in _ROWS})
#: 60.1 of a reversible type → its row (what a 0400 names as its original).
BY_MSG_TYPE: Final = MappingProxyType(
    {row.msg_type: row for row in _ROWS if row.reversible and row.msg_type is not None}
)
#: A type's name → the terminal cap that limits it (its row's ``cap``; uncapped absent).
CAP_BY_NAME: Final = MappingProxyType({r.name: r.cap for r in _ROWS if r.cap is not None})
#: Types whose approved entries settle as debits / credits (the store's batch sums).
DEBIT_TYPES: Final = tuple(r.name for r in _ROWS if r.settlement is Settlement.DEBIT)
CREDIT_TYPES: Final = tuple(r.name for r in _ROWS if r.settlement is Settlement.CREDIT)


def txn_row(name: str) -> TxnRow | None:
    """The row of a journaled ``txn_type`` (None for names no row has, e.g. old data)."""
    try:
        return TXN_TYPES[TxnType(name)]
    except ValueError:
        return None
