"""The engine's hot-path shortcuts answer exactly what the field-by-field paths answer:
the single-DES retail MAC, K fields read as raw bytes, the decrypted-key cache, the
M6/M8 head table and the CA/CC one-slice tail."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm_sim import retailmac
from hsm_sim.fields import HsmFault, Reader
from hsm_sim.keyscheme import key_field_of_wire, read_key, read_key_wire, read_pvk_pair
from posp.crypto.des import tdes_encrypt_ecb
from posp.crypto.mac import iso9797_alg3
from posp.crypto.pinblock import iso0_clear_account
from posp.errors import CryptoError
from tests.hsm_engine.conftest import Hsm, lmk_encrypt

h = bytes.fromhex
ZAK = "0123456789ABCDEFFEDCBA9876543210"
TPK = "1111222233334444AAAABBBBCCCCDDDD"
ZPK = "5B012F0E75970D5DB96EE65249F1D949"
EVEN_PARITY_ZPK = "5B012F0E75970D5DB96EE65249F1D948"  # last byte has even parity
ACCOUNT = "123456789012"

needs_native = pytest.mark.skipif(retailmac.load_native() is None, reason="no libcrypto DES")


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    data=st.binary(max_size=600),
    padding=st.sampled_from([1, 2]),
)
def test_native_retail_mac_equals_posp_crypto(key: bytes, data: bytes, padding: int) -> None:
    """libcrypto's single-DES chain gives the ISO 9797-1 alg 3 MAC of posp.crypto."""
    native = retailmac.load_native()
    assert native is not None
    assert native.mac(key, data, padding) == iso9797_alg3(key, data, padding)


@needs_native
def test_native_retail_mac_refuses_what_posp_crypto_refuses() -> None:
    """Single keys, partial blocks without padding and unknown paddings: CryptoError."""
    native = retailmac.load_native()
    assert native is not None and retailmac.NATIVE
    for key, data, padding in [(h(ZAK)[:8], b"12345678", 1), (h(ZAK), b"123", 0), (h(ZAK), b"", 0)]:
        with pytest.raises(CryptoError):
            iso9797_alg3(key, data, padding)
        with pytest.raises(CryptoError):
            native.mac(key, data, padding)
    with pytest.raises(CryptoError):
        native.mac(h(ZAK), b"1", 9)
    assert native.mac(h(ZAK), b"12345678", 0) == iso9797_alg3(h(ZAK), b"12345678", 0)


def test_without_native_des_the_mac_is_posp_crypto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off Linux (or without libcrypto) nothing native is loaded."""
    monkeypatch.setattr(sys, "platform", "darwin")
    assert retailmac.load_native() is None


_K_FIELD = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda tag, hexes, rest: tag + hexes + rest,
        st.sampled_from([b"", b"U", b"X", b"T", b"Y", b"u", b"t", b"Z", b"\xb5", b";"]),
        st.text("0123456789abcdefABCDEF", max_size=50).map(str.encode),
        st.binary(max_size=4),
    ),
)


def _outcome(read, data: bytes, end: int) -> tuple[str, object, int]:  # type: ignore[no-untyped-def]
    reader = Reader(data)
    reader.end = end
    try:
        return "ok", read(reader), reader.pos
    except HsmFault as fault:
        return "fault", fault.code, -1


@settings(max_examples=500, deadline=None)
@given(data=_K_FIELD, cut=st.integers(0, 60))
def test_raw_key_fields_read_as_read_key_reads_them(data: bytes, cut: int) -> None:
    """Same fault, same stop, and the same KeyField, as read_key / read_pvk_pair."""
    end = min(cut, len(data))
    for field_reader, wire_reader in [
        (read_key, read_key_wire),
        (read_pvk_pair, lambda r: read_key_wire(r, bare_hex=32)),
    ]:
        want = _outcome(field_reader, data, end)
        got = _outcome(wire_reader, data, end)
        if want[0] == "ok":
            assert got[0] == "ok" and got[2] == want[2]
            assert key_field_of_wire(got[1]) == want[1]  # type: ignore[arg-type]
        else:
            assert got == want


def test_a_cached_bad_parity_key_answers_each_callers_code(hsm: Hsm) -> None:
    """The cache keeps the parity verdict: 11 as the CA destination, then 10 as the CC source."""
    tpk = hsm.import_clear("002", TPK)
    bad = lmk_encrypt("001", h(EVEN_PARITY_ZPK), "U")
    block = tdes_encrypt_ecb(h(TPK), iso0_clear_account("1234", ACCOUNT)).hex().upper()
    for _ in range(2):
        assert hsm.call(f"CA{tpk}{bad}12{block}0101{ACCOUNT}")[0] == "11"
        assert hsm.call(f"CC{bad}{bad}12{block}0101{ACCOUNT}")[0] == "10"
    assert hsm.call(f"CA{tpk.lower()}{bad}12{block.lower()}0101{ACCOUNT}")[0] == "11"


@pytest.mark.parametrize(
    ("head", "code"),
    [
        ("00131008", "00"),
        ("10131008", "02"),  # mode
        ("03131008", "03"),  # input format
        ("00141008", "04"),  # algorithm
        ("00135008", "09"),  # padding
        ("00131001", "05"),  # key type
        ("0013100", "05"),  # key type cut short
        ("00", "04"),  # no algorithm
        ("", "02"),
    ],
)
def test_every_bad_m8_head_field_answers_its_own_code(hsm: Hsm, head: str, code: str) -> None:
    """A head outside the table is read field by field (mode, format, alg, padding, type)."""
    zak = hsm.import_clear("008", ZAK)
    message = b"0008" + b"12345678"
    mac = hsm.ok(f"M600131008{zak}".encode() + message)
    request = f"M8{head}".encode()
    if len(head) == 8:
        request += zak.encode() + message + mac.encode()
    assert hsm.call(request)[0] == code


@pytest.mark.parametrize(
    ("tail", "code"),
    [
        ("1X{block}0101{acct}", "15"),  # max length not digits
        ("12{bad_block}0101{acct}", "15"),  # PIN block not hex
        ("12{block}0\xb501{acct}", "23"),  # source format not ASCII
        ("12{block}0102{acct}", "23"),  # destination format unknown (after the 15s)
        ("03{block}0102{acct}", "15"),  # max length 03 wins over the format
        ("12{block}0101{acct}X", "15"),  # a byte after the account
        ("12{block}01011234567890X2", "15"),  # account not digits
        ("12{block}0101", "15"),  # short
    ],
)
def test_ca_tail_faults_match_the_field_by_field_order(hsm: Hsm, tail: str, code: str) -> None:
    tpk = hsm.import_clear("002", TPK)
    zpk = hsm.import_clear("001", ZPK)
    block = tdes_encrypt_ecb(h(TPK), iso0_clear_account("1234", ACCOUNT)).hex().upper()
    text = tail.format(block=block, bad_block="G" + block[1:], acct=ACCOUNT)
    request = f"CA{tpk}{zpk}".encode() + text.encode("latin-1")
    assert hsm.call(request)[0] == code


def test_ca_format_0_both_ways_re_encrypts_the_same_clear_block(hsm: Hsm) -> None:
    """01→01 with the account: the ZPK block holds exactly the TPK block's clear block."""
    tpk = hsm.import_clear("002", TPK)
    zpk = hsm.import_clear("001", ZPK)
    for pin in ("1234", "123456789012"):
        clear = iso0_clear_account(pin, ACCOUNT)
        block = tdes_encrypt_ecb(h(TPK), clear).hex().upper()
        fields = hsm.ok(f"CA{tpk}{zpk}12{block}0101{ACCOUNT}")
        assert fields == f"{len(pin):02d}{tdes_encrypt_ecb(h(ZPK), clear).hex().upper()}01"
    too_long = tdes_encrypt_ecb(h(TPK), iso0_clear_account("12345", ACCOUNT)).hex().upper()
    assert hsm.call(f"CA{tpk}{zpk}04{too_long}0101{ACCOUNT}")[0] == "24"
