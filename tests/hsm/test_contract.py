"""The HsmClient contract: the same cases over the in-process and the TCP transport.

Every result is checked against clear keys with posp.crypto, never against the
engine itself.  Keys with known clear values are planted with K0 (one clear
component), so each test knows the keys it works with.
"""

from __future__ import annotations

import dataclasses

import pytest

from posp.crypto.des import (
    adjust_odd_parity,
    check_value,
    tdes_decrypt_ecb,
    tdes_encrypt_ecb,
    xor_bytes,
)
from posp.crypto.emv import CardKeys, Scheme
from posp.crypto.mac import cup_ecb_mac, iso9797_alg1, iso9797_alg3
from posp.crypto.pinblock import iso0_clear_account, iso0_pin_account
from posp.errors import HsmCommandError, HsmParityError, HsmPinBlockError
from posp.hsm.api import KEY_TAK, KEY_TDK, KEY_TMK, KEY_TPK, KEY_ZAK, KEY_ZMK, KEY_ZPK, HsmClient
from posp.hsm.kq import KqMode, KqRequest, KqResult, build_kq, pan_psn
from tests.hsm_engine.conftest import arqc_with_0x19

ACCOUNT12 = "123456789012"
TMK = adjust_odd_parity(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))
TPK = adjust_odd_parity(bytes.fromhex("1111222233334444AAAABBBBCCCCDDDD"))
ZPK = adjust_odd_parity(bytes.fromhex("5B012F0E75970D5DB96EE65249F1D949"))
ZMK = adjust_odd_parity(bytes.fromhex("08080808080808080808080808080808"))
TAK = adjust_odd_parity(bytes.fromhex("3D3D5E5E7F7F1010"))
ZAK = adjust_odd_parity(bytes.fromhex("A1B2C3D4E5F60718293A4B5C6D7E8F90"))
TDK = adjust_odd_parity(bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0"))
PVK = adjust_odd_parity(bytes.fromhex("0123456789ABCDEF0123456789ABCDEF"))


async def plant(hsm: HsmClient, key_type: str, clear: bytes) -> str:
    """The clear key under the LMK (K0, one component); checks its KCV on the way."""
    scheme = "Z" if len(clear) == 8 else "U"
    imported = await hsm.form_key_from_clear_components(key_type, [clear.hex().upper()], scheme)
    assert imported.kcv == check_value(clear).hex().upper()
    return imported.under_lmk


def ecb_halves(key: bytes, clear_key: bytes) -> str:
    """A key under a ZMK/TMK with scheme X (each half 3DES-ECB), as on the wire."""
    return "X" + tdes_encrypt_ecb(key, clear_key).hex().upper()


def reference_pvv(pvk: bytes, account12: str, pvki: str, pin: str) -> str:
    """Visa PVV computed independently of the engine (hsm-reference §4 DG)."""
    tsp = account12[1:] + pvki + pin[:4]
    digits = tdes_encrypt_ecb(pvk, bytes.fromhex(tsp)).hex().upper()
    decimals = [c for c in digits if c.isdigit()]
    letters = [str(int(c, 16) - 10) for c in digits if not c.isdigit()]
    return "".join((decimals + letters)[:4])


async def test_echo_returns_the_data(hsm: HsmClient) -> None:
    assert await hsm.echo("HELLO HSM") == "HELLO HSM"


async def test_diagnostics_reports_lmk_check_and_firmware(hsm: HsmClient) -> None:
    diag = await hsm.diagnostics()
    assert len(diag.lmk_check) == 16 and diag.firmware == "0007-E000"


async def test_k0_and_bu_check_values_match_the_clear_key(hsm: HsmClient) -> None:
    tpk = await plant(hsm, KEY_TPK, TPK)
    assert await hsm.check_value(KEY_TPK, tpk) == check_value(TPK).hex().upper()
    assert await hsm.check_value(KEY_TPK, tpk, full=True) == check_value(TPK, 8).hex().upper()


async def test_a0_mode1_under_tmk_decrypts_to_a_key_with_the_announced_kcv(
    hsm: HsmClient,
) -> None:
    tmk = await plant(hsm, KEY_TMK, TMK)
    generated = await hsm.generate_key(KEY_TPK, export_under=tmk, export_kind="tmk")
    assert generated.under_wrap is not None and generated.under_wrap.startswith("X")
    clear = tdes_decrypt_ecb(TMK, bytes.fromhex(generated.under_wrap[1:]))
    assert check_value(clear).hex().upper() == generated.kcv
    assert await hsm.check_value(KEY_TPK, generated.under_lmk) == generated.kcv


async def test_a0_mode0_generates_a_key_under_the_lmk_only(hsm: HsmClient) -> None:
    generated = await hsm.generate_key(KEY_ZPK)
    assert generated.under_wrap is None and generated.under_lmk.startswith("U")
    assert await hsm.check_value(KEY_ZPK, generated.under_lmk) == generated.kcv


async def test_fa_and_fk_import_keys_sent_under_the_zmk(hsm: HsmClient) -> None:
    zmk = await plant(hsm, KEY_ZMK, ZMK)
    zpk = await hsm.import_zpk(zmk, ecb_halves(ZMK, ZPK))
    assert zpk.kcv == check_value(ZPK).hex().upper()
    zak = await hsm.import_zak(zmk, ecb_halves(ZMK, ZAK))
    assert zak.kcv == check_value(ZAK).hex().upper()


async def test_a6_a8_round_trip_through_the_zmk(hsm: HsmClient) -> None:
    zmk = await plant(hsm, KEY_ZMK, ZMK)
    imported = await hsm.import_key(KEY_ZPK, zmk, ecb_halves(ZMK, ZPK))
    assert imported.kcv == check_value(ZPK).hex().upper()
    exported = await hsm.export_key(KEY_ZPK, zmk, imported.under_lmk)
    assert exported.under_zmk == ecb_halves(ZMK, ZPK) and exported.kcv == imported.kcv


async def test_ae_and_ag_put_working_keys_under_the_tmk(hsm: HsmClient) -> None:
    tmk = await plant(hsm, KEY_TMK, TMK)
    tpk_under_tmk = await hsm.tpk_under_tmk(tmk, await plant(hsm, KEY_TPK, TPK))
    assert tpk_under_tmk == ecb_halves(TMK, TPK)
    tak_under_tmk = await hsm.tak_under_tmk(tmk, await plant(hsm, KEY_TAK, TAK))
    assert tak_under_tmk == tdes_encrypt_ecb(TMK, TAK).hex().upper()


@pytest.mark.parametrize("pin", ["1234", "654321", "123456789012"])
async def test_ca_translation_decrypts_to_the_same_pin(hsm: HsmClient, pin: str) -> None:
    tpk, zpk = await plant(hsm, KEY_TPK, TPK), await plant(hsm, KEY_ZPK, ZPK)
    block = tdes_encrypt_ecb(TPK, iso0_clear_account(pin, ACCOUNT12)).hex().upper()
    result = await hsm.translate_pin_tpk_to_zpk(tpk, zpk, block, ACCOUNT12)
    assert result.pin_length == len(pin) and result.pin_format == "01"
    clear = tdes_decrypt_ecb(ZPK, bytes.fromhex(result.pin_block))
    assert iso0_pin_account(clear, ACCOUNT12) == pin


async def test_cc_translation_decrypts_to_the_same_pin(hsm: HsmClient) -> None:
    src, dst = await plant(hsm, KEY_ZPK, ZPK), await plant(hsm, KEY_ZPK, TPK)
    block = tdes_encrypt_ecb(ZPK, iso0_clear_account("8642", ACCOUNT12)).hex().upper()
    result = await hsm.translate_pin_zpk_to_zpk(src, dst, block, ACCOUNT12)
    clear = tdes_decrypt_ecb(TPK, bytes.fromhex(result.pin_block))
    assert iso0_pin_account(clear, ACCOUNT12) == "8642"


async def test_a_garbled_pin_block_raises_the_pin_block_error(hsm: HsmClient) -> None:
    tpk, zpk = await plant(hsm, KEY_TPK, TPK), await plant(hsm, KEY_ZPK, ZPK)
    garbage = tdes_encrypt_ecb(TPK, bytes.fromhex("9F" * 8)).hex().upper()
    with pytest.raises(HsmPinBlockError):
        await hsm.translate_pin_tpk_to_zpk(tpk, zpk, garbage, ACCOUNT12)


async def test_a_key_with_bad_parity_raises_the_parity_error(hsm: HsmClient) -> None:
    tpk = await plant(hsm, KEY_TPK, TPK)
    flipped = tpk[:-1] + ("0" if tpk[-1] != "0" else "1")  # corrupt the ciphertext
    zpk = await plant(hsm, KEY_ZPK, ZPK)
    block = tdes_encrypt_ecb(TPK, iso0_clear_account("1234", ACCOUNT12)).hex().upper()
    with pytest.raises(HsmParityError):
        await hsm.translate_pin_tpk_to_zpk(flipped, zpk, block, ACCOUNT12)


async def test_pvv_generation_and_dc_ec_verification(hsm: HsmClient) -> None:
    pvk = "U" + (await plant(hsm, KEY_TPK, PVK))[1:]
    lmk_pin = await hsm.encrypt_pin("4321", ACCOUNT12)
    assert len(lmk_pin) == 5
    pvv = await hsm.generate_pvv(pvk, lmk_pin, ACCOUNT12, "1")
    assert pvv == reference_pvv(PVK, ACCOUNT12, "1", "4321")
    tpk, zpk = await plant(hsm, KEY_TPK, TPK), await plant(hsm, KEY_ZPK, ZPK)
    for key, clear_key, verify in (
        (tpk, TPK, hsm.verify_pin_tpk_pvv),
        (zpk, ZPK, hsm.verify_pin_zpk_pvv),
    ):
        right = tdes_encrypt_ecb(clear_key, iso0_clear_account("4321", ACCOUNT12)).hex().upper()
        wrong = tdes_encrypt_ecb(clear_key, iso0_clear_account("4322", ACCOUNT12)).hex().upper()
        assert await verify(key, pvk, right, "01", ACCOUNT12, "1", pvv) is True
        assert await verify(key, pvk, wrong, "01", ACCOUNT12, "1", pvv) is False


async def test_m2_decrypts_data_under_the_tdk(hsm: HsmClient) -> None:
    tdk = await plant(hsm, KEY_TDK, TDK)
    plain = bytes.fromhex("6225880000000001D2512101000000000000")[:16]
    cipher = tdes_encrypt_ecb(TDK, plain).hex().upper()
    assert await hsm.decrypt_data(KEY_TDK, tdk, cipher) == plain.hex().upper()


MAB = b"0200" + bytes(range(37))  # 41 bytes: not a whole number of blocks


async def test_m6_alg09_equals_the_cup_ecb_mac(hsm: HsmClient) -> None:
    tak = await plant(hsm, KEY_TAK, TAK)
    mac = await hsm.generate_mac(KEY_TAK, tak, MAB, algorithm="09")
    assert mac == cup_ecb_mac(TAK, MAB)
    assert await hsm.verify_mac(KEY_TAK, tak, MAB, mac, algorithm="09") is True


async def test_m6_alg03_and_13_equal_the_x919_mac(hsm: HsmClient) -> None:
    zak = await plant(hsm, KEY_ZAK, ZAK)
    full = iso9797_alg3(ZAK, MAB)
    assert await hsm.generate_mac(KEY_ZAK, zak, MAB, algorithm="13") == full
    assert await hsm.generate_mac(KEY_ZAK, zak, MAB, algorithm="03") == full[:4]
    assert await hsm.verify_mac(KEY_ZAK, zak, MAB, full, algorithm="13") is True


async def test_m6_alg01_equals_the_cbc_mac_and_padding_2(hsm: HsmClient) -> None:
    tak = await plant(hsm, KEY_TAK, TAK)
    mac = await hsm.generate_mac(KEY_TAK, tak, MAB, algorithm="01", padding="2")
    assert mac == iso9797_alg1(TAK, MAB, 2)[:4]


async def test_m8_refuses_a_wrong_mac_with_false(hsm: HsmClient) -> None:
    tak = await plant(hsm, KEY_TAK, TAK)
    assert await hsm.verify_mac(KEY_TAK, tak, MAB, b"00000000", algorithm="09") is False
    assert await hsm.verify_mac(KEY_TAK, tak, MAB, bytes(4), algorithm="01") is False


async def test_a2_a4_form_the_xor_of_the_components(hsm: HsmClient) -> None:
    clear1, lmk1 = await hsm.generate_component(KEY_ZMK)
    clear2, lmk2 = await hsm.generate_component(KEY_ZMK)
    formed = await hsm.form_key_from_components(KEY_ZMK, [lmk1, lmk2])
    expected = adjust_odd_parity(xor_bytes(bytes.fromhex(clear1), bytes.fromhex(clear2)))
    assert formed.kcv == check_value(expected).hex().upper()


async def test_an_invalid_key_type_raises_a_command_error_with_its_code(
    hsm: HsmClient,
) -> None:
    with pytest.raises(HsmCommandError) as caught:
        await hsm.generate_key("0Z9")
    assert caught.value.command == "A0" and caught.value.error_code == "04"


# --- KQ (chip cards): verify the ARQC, make the ARPC ----------------------------------

IMK_AC = adjust_odd_parity(bytes.fromhex("8657AD5129F18615AE5D04C46E0D57AE"))


async def _kq_request(hsm: HsmClient, data: bytes, *, mode: KqMode) -> tuple[KqRequest, CardKeys]:
    """A PBOC v01 request for a planted IMK-AC, its ARQC made from clear keys."""
    mk_ac = await plant(hsm, "109", IMK_AC)
    block = pan_psn("6225880000000000010", "01")
    keys = CardKeys.derive(IMK_AC, block, Scheme.PBOC_V01, b"\x00\x07")
    arqc = keys.cryptogram(data)
    return KqRequest(
        mode, Scheme.PBOC_V01, mk_ac, block, b"\x00\x07", bytes(4), data, arqc, b"00"
    ), keys


async def test_kq_verifies_the_arqc_and_returns_the_cards_arpc(hsm: HsmClient) -> None:
    request, keys = await _kq_request(hsm, bytes(range(40)), mode=KqMode.VERIFY_AND_ARPC)
    assert await hsm.verify_arqc(request) == KqResult(True, keys.arpc(request.arqc, b"00"))


async def test_kq_binary_fields_holding_0x19_pass_both_ways(hsm: HsmClient) -> None:
    """0x19 inside the data, ARQC, ARC and the returned ARPC is not taken as a trailer."""
    request, keys = await _kq_request(hsm, b"\x19" * 20, mode=KqMode.VERIFY_AND_ARPC)
    data, arqc, arpc = arqc_with_0x19(keys, b"\x19" * 20)
    tricky = dataclasses.replace(request, data=data, arqc=arqc, arc=b"\x19\x19")
    assert await hsm.verify_arqc(tricky) == KqResult(True, arpc)


async def test_kq_a_wrong_arqc_is_error_01_without_arpc(hsm: HsmClient) -> None:
    request, _ = await _kq_request(hsm, bytes(range(40)), mode=KqMode.VERIFY_AND_ARPC)
    forged = dataclasses.replace(request, arqc=bytes(8))
    assert await hsm.verify_arqc(forged) == KqResult(False, None)


async def test_kq_mode_0_verifies_without_an_arpc(hsm: HsmClient) -> None:
    request, _ = await _kq_request(hsm, bytes(range(40)), mode=KqMode.VERIFY)
    assert await hsm.verify_arqc(request) == KqResult(True, None)


async def test_kq_a_key_not_under_the_lmk_raises_a_command_error(hsm: HsmClient) -> None:
    """A malformed MK-AC (not a 109 key under this LMK: bad parity) is refused, not verified."""
    request, _ = await _kq_request(hsm, bytes(range(40)), mode=KqMode.VERIFY_AND_ARPC)
    bad_key = dataclasses.replace(request, mk_ac="U" + "0" * 31 + "1")
    with pytest.raises(HsmCommandError):
        await hsm.verify_arqc(bad_key)


async def test_kq_malformed_fields_are_refused_before_sending() -> None:
    """build_kq names the wrong-sized field; nothing reaches the HSM."""
    request = KqRequest(
        KqMode.VERIFY, Scheme.PBOC_V01, "U" + "0" * 32, bytes(8), b"\x00", bytes(4), b"x",
        bytes(8), b"00",
    )  # fmt: skip
    with pytest.raises(ValueError, match="atc must be 2 bytes"):
        build_kq(request)


async def test_kq_a_truncated_request_answers_a_format_error(hsm: HsmClient) -> None:
    """A KQ cut short inside its data (length says more) is refused with an error code."""
    request, _ = await _kq_request(hsm, bytes(range(40)), mode=KqMode.VERIFY_AND_ARPC)
    raw = build_kq(request)
    cut = raw[: raw.index(b";") - 5]
    reply = await hsm.transport.exchange(cut)
    assert reply[:2] == b"KR" and reply[2:4] not in (b"00", b"01")
