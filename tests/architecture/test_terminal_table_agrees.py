"""The simulated terminal keeps its own transaction table (terminals/txn.py), as a
real terminal's software does, so that the conformance catalogue runs against any
switch.  This pins it to the switch's table (posp/txn.py): a card transaction the
terminal originates is routed by the switch to the row of the same name, and the
two agree on whether it is reversible and MACed.  A type added to one table and
not (or differently) to the other fails here."""

from __future__ import annotations

from posp.iso8583.fields import Field60
from posp.iso8583.message import Message
from posp.pipeline.routes import find_route
from posp.txn import TXN_TYPES, MacPolicy, TxnType
from terminals.txn import TXN_TABLE, TxnKind

SWITCH_NAMES = {t.value for t in TxnType}


def _card_kinds() -> list[TxnKind]:
    return [
        kind
        for kind, spec in TXN_TABLE.items()
        if spec.financial and spec.proc_code is not None and kind.value in SWITCH_NAMES
    ]


def test_every_card_transaction_the_terminal_sends_is_routed_to_its_row() -> None:
    kinds = _card_kinds()
    assert len(kinds) >= 11  # balance, purchase, refund, the pre-auth family, transfers, voids
    for kind in kinds:
        spec = TXN_TABLE[kind]
        assert spec.proc_code is not None
        message = Message(spec.mti, {3: spec.proc_code})
        route = find_route(message, Field60(spec.msg_type, "000001", "000"))
        assert route is not None, kind
        assert route.name == kind.value, (kind, route.name)


def test_the_tables_agree_on_reversal_and_mac() -> None:
    for kind in _card_kinds():
        spec, row = TXN_TABLE[kind], TXN_TYPES[TxnType(kind.value)]
        assert row.reversible == spec.reversible, kind
        assert (row.mac is MacPolicy.REQUIRED) == spec.mac, kind
