"""Key commands A0, BU, A6, A8, FA, FK, AE, AG checked with clear keys against posp.crypto."""

from __future__ import annotations

import pytest

from hsm_sim.engine import HsmEngine
from posp.crypto.des import adjust_odd_parity, check_value, tdes_decrypt_ecb, tdes_encrypt_ecb
from tests.hsm_engine.conftest import Hsm

h = bytes.fromhex
ZMK = "0808080808080808" * 2
TMK = "13131313131313131515151515151515"
KEY16 = "5B012F0E75970D5DB96EE65249F1D949"
KEY8 = "5DBF7F38A146FD5D"  # the vectors' MAK with odd parity


def kcv(hex_key: str, n: int = 3) -> str:
    return check_value(h(hex_key), n).hex().upper()


def ecb_per_half(kek: str, data: bytes, decrypt: bool = True) -> bytes:
    op = tdes_decrypt_ecb if decrypt else tdes_encrypt_ecb
    return b"".join(op(h(kek), data[i : i + 8]) for i in range(0, len(data), 8))


def test_a0_worked_example_reproduces_byte_for_byte() -> None:
    """hsm-reference §7: A0 mode 1 with the test LMK and the fixed ZPK."""
    engine = HsmEngine(key_source=lambda n: h(KEY16))
    reply = engine.handle(b"0001A01001UU0A26760BD07871026B6702C5F9BA25B3U")
    assert reply == (
        b"0001A100U61F612B4FD859AA204D0D2414F18C29FU631EAA5F7E6A6C9EB5A1701259A7AB54B3E1C8"
    )


def test_a0_mode0_key_checks_with_bu(hsm: Hsm) -> None:
    """A0 mode 0 returns a U key and a KCV that BU reproduces."""
    fields = hsm.ok("A00002U")
    key, kcv6 = fields[:-6], fields[-6:]
    assert key.startswith("U") and len(key) == 33
    assert hsm.ok(f"BUFF1{key};002;001") == kcv6


def test_bu_after_a0_answers_from_the_generated_key_cache(
    hsm: Hsm, fixed_keys: list[bytes]
) -> None:
    """The BU that follows an A0 is answered from the keys the A0 cached (no
    decryption), with the same values as for a key decrypted afresh; the check
    value block is taken once; the field read under another key type is not the
    cached key (another LMK pair: its parity fails)."""
    fixed_keys.extend([h(KEY16), h(KEY8)])
    tmk = hsm.import_clear("002", TMK)
    tpk = hsm.ok(f"A01002U;1{tmk}X")[:33]
    tak = hsm.ok(f"A01003Z;1{tmk}Z")[:16]
    context = hsm.engine._ctx
    assert ("002", tpk.encode()) in context._key_cache
    assert ("003", tak.encode()) in context._key_cache
    assert len(context._check_values) == 2
    assert hsm.ok(f"BU021{tpk}") == kcv(KEY16, 8)
    assert hsm.call(f"BU031{tpk}")[0] == "10"  # not a TAK: another LMK pair, bad parity
    assert hsm.ok(f"BU030{tak}") == kcv(KEY8, 8)
    assert not context._check_values  # each block taken by its BU
    assert hsm.ok(f"BU021{tpk}") == kcv(KEY16, 8)  # again: computed, the same
    context._key_cache.clear()
    assert hsm.ok(f"BU021{tpk}") == kcv(KEY16, 8)  # decrypted afresh: the same
    assert hsm.ok(f"BU030{tak}") == kcv(KEY8, 8)


KEY24 = KEY16 + "5DBF7F38A146FD5D"


@pytest.mark.parametrize(
    ("scheme", "clear", "flag"),
    [("Z", KEY8, "0"), ("U", KEY16, "1"), ("X", KEY16, "1"), ("T", KEY24, "2"), ("Y", KEY24, "2")],
)
def test_a0_then_bu_for_every_lmk_scheme(
    hsm: Hsm, fixed_keys: list[bytes], scheme: str, clear: str, flag: str
) -> None:
    """For every LMK scheme, the BU after an A0 (from the cache), the same field in
    lower case (another cache slot: decrypted) and a fresh engine (decrypted) give
    the clear key's check value; a wrong length flag answers 05."""
    fixed_keys.append(h(clear))
    fields = hsm.ok(f"A00002{scheme}")
    key, kcv6 = fields[:-6], fields[-6:]
    assert kcv6 == kcv(clear)
    assert hsm.ok(f"BU02{flag}{key}") == kcv(clear, 8)
    assert hsm.ok(f"BU02{flag}{key.lower()}") == kcv(clear, 8)
    assert Hsm(HsmEngine()).ok(f"BU02{flag}{key};001") == kcv(clear)
    wrong = "1" if flag != "1" else "2"
    assert hsm.call(f"BU02{wrong}{key}")[0] == "05"


def test_a0_export_failure_leaves_nothing_cached(hsm: Hsm) -> None:
    """An A0 that faults on its export (26) caches no key and no check value."""
    tmk = hsm.import_clear("002", TMK)
    context = hsm.engine._ctx
    cached = len(context._key_cache)
    assert hsm.call(f"A01002U;1{tmk}Z")[0] == "26"
    assert len(context._key_cache) == cached and not context._check_values


def test_a0_mode1_under_tmk_decrypts_with_clear_tmk(hsm: Hsm, fixed_keys: list[bytes]) -> None:
    """A0 ;1 exports under the TMK with plain ECB per half (X); the clear TMK recovers it."""
    fixed_keys.append(h(KEY16))
    tmk = hsm.import_clear("002", TMK)
    fields = hsm.ok(f"A01002U;1{tmk}X")
    assert fields.endswith(kcv(KEY16))
    under_tmk = fields[33:66]
    assert under_tmk.startswith("X")
    assert ecb_per_half(TMK, h(under_tmk[1:])) == h(KEY16)


def test_a0_single_tak_under_tmk_scheme_z(hsm: Hsm, fixed_keys: list[bytes]) -> None:
    """A TAK generated with scheme Z comes back bare 16H under LMK and TMK."""
    fixed_keys.append(h(KEY8))
    tmk = hsm.import_clear("002", TMK)
    fields = hsm.ok(f"A01003Z;1{tmk}Z")
    assert len(fields) == 16 + 16 + 6
    assert tdes_decrypt_ecb(h(TMK), h(fields[16:32])) == h(KEY8)
    assert fields[32:] == kcv(KEY8)


def test_a0_export_scheme_must_fit_key_length(hsm: Hsm) -> None:
    """A double-length key cannot be exported with scheme Z (26)."""
    tmk = hsm.import_clear("002", TMK)
    assert hsm.call(f"A01002U;1{tmk}Z")[0] == "26"


def test_a0_zmk_needs_authorised_state() -> None:
    """Generating a ZMK outside the Authorised state answers 17."""
    hsm = Hsm(HsmEngine(authorised=False))
    assert hsm.call("A00000U")[0] == "17"
    assert hsm.call("A00001U")[0] == "00"


def test_bu_codes_lengths_and_kcv_types(hsm: Hsm) -> None:
    """BU: 2-digit code gives 16H by default, 6H with KCV type 1; length flag is checked."""
    tpk = hsm.import_clear("002", KEY16)
    assert hsm.ok(f"BU021{tpk}") == kcv(KEY16, 8)
    assert hsm.ok(f"BU021{tpk};001") == kcv(KEY16)
    assert hsm.ok(f"BUFF1{tpk};002;000") == kcv(KEY16, 8)
    assert hsm.call(f"BU020{tpk}")[0] == "05"
    assert hsm.call(f"BUZZ1{tpk}")[0] == "04"
    assert hsm.call(f"BUFF1{tpk}")[0] == "15"


def test_a6_import_and_a8_export_round_trip(hsm: Hsm) -> None:
    """A6 imports a key under a clear ZMK (X); A8 exports it back to the same bytes."""
    zmk = hsm.import_clear("000", ZMK)
    under_zmk = "X" + ecb_per_half(ZMK, h(KEY16), decrypt=False).hex().upper()
    fields = hsm.ok(f"A6001{zmk}{under_zmk}U")
    under_lmk, kcv6 = fields[:-6], fields[-6:]
    assert kcv6 == kcv(KEY16)
    assert hsm.ok(f"A8001{zmk}{under_lmk}X") == under_zmk + kcv6


def test_a6_bad_parity_is_advice_01_with_fields(hsm: Hsm) -> None:
    """A6 forces odd parity and answers 01 with the fields."""
    zmk = hsm.import_clear("000", ZMK)
    even = bytes([0x5A]) + h(KEY16)[1:]
    under_zmk = "X" + ecb_per_half(ZMK, even, decrypt=False).hex().upper()
    code, fields = hsm.call(f"A6001{zmk}{under_zmk}U")
    assert code == "01"
    assert fields[-6:] == check_value(adjust_odd_parity(even)).hex().upper()


def test_a8_needs_authorised_state(hsm: Hsm) -> None:
    """A8 outside the Authorised state answers 17."""
    zmk = hsm.import_clear("000", ZMK)
    key = hsm.import_clear("001", KEY16)
    hsm.engine.authorised = False
    assert hsm.call(f"A8001{zmk}{key}X")[0] == "17"


def test_fa_imports_zpk_with_and_without_options(hsm: Hsm) -> None:
    """FA: `;0U1` gives a U key and 6H KCV; without options the scheme follows the input
    and the KCV is 16H."""
    zmk = hsm.import_clear("000", ZMK)
    under_zmk = "X" + ecb_per_half(ZMK, h(KEY16), decrypt=False).hex().upper()
    fields = hsm.ok(f"FA{zmk}{under_zmk};0U1")
    assert fields.startswith("U") and fields[33:] == kcv(KEY16)
    assert hsm.ok(f"BUFF1{fields[:33]};001;001") == kcv(KEY16)
    plain = hsm.ok(f"FA{zmk}{under_zmk}")
    assert plain.startswith("X") and plain[33:] == kcv(KEY16, 8)


def test_fa_parity_advice_and_all_zero_key(hsm: Hsm) -> None:
    """FA answers 01 (fields returned) for bad parity and 11 for an all-zero ZPK."""
    zmk = hsm.import_clear("000", ZMK)
    even = h("5A" + KEY16[2:])
    code, fields = hsm.call(f"FA{zmk}X{ecb_per_half(ZMK, even, False).hex().upper()};0U1")
    assert code == "01" and fields[33:] == check_value(adjust_odd_parity(even)).hex().upper()
    zero = ecb_per_half(ZMK, bytes(16), False).hex().upper()
    assert hsm.call(f"FA{zmk}X{zero};0U1")[0] == "11"


@pytest.mark.parametrize(("flag", "type_code"), [("1", "008"), ("0", "00A")])
def test_fk_imports_zak_and_zek(hsm: Hsm, flag: str, type_code: str) -> None:
    """FK flag 1 stores a ZAK (008), flag 0 a ZEK (00A); BU with that type agrees."""
    zmk = hsm.import_clear("000", ZMK)
    under_zmk = "X" + ecb_per_half(ZMK, h(KEY16), decrypt=False).hex().upper()
    fields = hsm.ok(f"FK{flag}{zmk}{under_zmk};0U1")
    assert hsm.ok(f"BUFF1{fields[:33]};{type_code};001") == kcv(KEY16)


def test_ae_ag_export_under_tmk(hsm: Hsm) -> None:
    """AE (TPK, default X) and AG (TAK, default Z) decrypt under the clear TMK."""
    tmk = hsm.import_clear("002", TMK)
    tpk = hsm.import_clear("002", KEY16)
    tak = hsm.import_clear("003", KEY8)
    ae = hsm.ok(f"AE{tmk}{tpk}")
    assert ae.startswith("X") and ecb_per_half(TMK, h(ae[1:])) == h(KEY16)
    ag = hsm.ok(f"AG{tmk}{tak}")
    assert tdes_decrypt_ecb(h(TMK), h(ag)) == h(KEY8)
    ae_u = hsm.ok(f"AE{tmk}{tpk};U00")
    assert ae_u.startswith("U") and ae_u != ae
    assert hsm.call(f"AG{tmk}{tak};U00")[0] == "26"
