"""Terminal request → network request mapping (pure)."""

from __future__ import annotations

import pytest

from posp.iso8583 import Message
from posp.iso8583.fields import OriginalData
from posp.network.mapping import (
    network_request,
    network_reversal,
    terminal_response_fields,
)
from posp.store.api import JournalEntry, Merchant
from posp.txn import TXN_TYPES, TxnType

#: Network MTI of each type, read from the transaction-type table.
NETWORK_MTI = {t.value: row.network_mti for t, row in TXN_TYPES.items()}


def row(txn_type: str):  # type: ignore[no-untyped-def]
    return TXN_TYPES[TxnType(txn_type)]


MERCHANT = Merchant("898100000000001", "Demo Café Shanghai", "5411")


def terminal(f3: str, **extra: str) -> Message:
    fields: dict[int, str | bytes] = {
        2: "6225880000000000036", 3: f3, 4: "000000001000", 11: "000123", 14: "3012",
        22: "021", 25: "00", 41: "10000001", 42: "898100000000001", 49: "156",
        60: "22000001000", 64: b"ABCDEFGH",
    }  # fmt: skip
    fields.update(extra)
    return Message("0200", fields)


def original(txn_type: str = "purchase") -> JournalEntry:
    entry = JournalEntry("10000001", "898100000000001", "000001", "000100", txn_type, "0200")
    entry.network_stan, entry.network_f7 = "000555", "1121103000"
    return entry


def test_purchase_with_pin_carries_zpk_block_mcc_name_rrn_and_60_1() -> None:
    """F52 under ZPK as bytes, F53 2600…, 18, 43 (an40 ASCII), 37, 60 = 60.1; no 64/11."""
    req = network_request(
        row("purchase"), terminal("000000"), merchant=MERCHANT, pin_block_zpk="0123456789ABCDEF",
        track2="6225880000000000036D3012", track3=None, rrn="010000000001", original=None,
    )  # fmt: skip
    assert req.mti == "0200"
    assert req[52] == bytes.fromhex("0123456789ABCDEF") and req[53] == "2600000000000000"
    assert req[18] == "5411" and req[37] == "010000000001" and req[60] == "22"
    assert len(str(req[43])) == 40 and str(req[43]).isascii()
    assert 64 not in req and 11 not in req and 90 not in req
    assert req[35] == "6225880000000000036D3012"


@pytest.mark.parametrize(
    ("txn_type", "mti"),
    [("purchase_void", "0200"), ("refund", "0220"), ("preauth_void", "0100"),
     ("completion", "0200"), ("completion_void", "0200")],
)  # fmt: skip
def test_referencing_types_carry_f90_of_the_original(txn_type: str, mti: str) -> None:
    """F90 = original network MTI + network STAN + F7; ids zero until the link fills them."""
    req = network_request(
        row(txn_type), terminal("200000"), merchant=MERCHANT, pin_block_zpk=None, track2=None,
        track3=None, rrn="010000000002", original=original(),
    )  # fmt: skip
    assert req.mti == mti == NETWORK_MTI[txn_type]
    f90 = OriginalData.parse(str(req[90]))
    assert (f90.mti, f90.stan, f90.f7) == ("0200", "000555", "1121103000")
    assert 52 not in req and 53 not in req


def test_reversal_drops_pin_and_track_and_points_at_original() -> None:
    """0420: no 26/35/36/52/53/55, 39 = reason, F90 from the sent request's 7/11/32/33."""
    sent = Message("0200", {2: "6225880000000000036", 4: "000000001000", 7: "1121103000",
                            11: "000555", 32: "48010000", 33: "48010000", 35: "x", 52: b"12345678",
                            53: "2600000000000000", 26: "12", 128: b"MACMACMA"})  # fmt: skip
    rev = network_reversal(sent, "06")
    assert rev.mti == "0420" and rev[39] == "06"
    assert not {26, 35, 36, 52, 53, 55, 128, 7, 11} & set(rev.fields)
    assert rev[90] == "0200" + "000555" + "1121103000" + "00048010000" * 2


def test_terminal_response_fields_copy_and_default_96() -> None:
    """The inverse helper copies 37/38/39/15/54/44/63 and answers 96 without F39."""
    resp = Message("0210", {37: "010000000001", 38: "000001", 39: "00", 63: "CUP", 11: "x"})
    assert terminal_response_fields(resp) == {37: "010000000001", 38: "000001", 39: "00",
                                              63: "CUP"}  # fmt: skip
    assert terminal_response_fields(Message("0210", {}))[39] == "96"
