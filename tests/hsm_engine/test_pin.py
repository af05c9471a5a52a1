"""PIN commands CA, CC, BA, DG, DC, EC against posp.crypto and psec."""

from __future__ import annotations

from typing import Any

import psec.pin
import pytest

from posp.crypto.des import tdes_decrypt_ecb, tdes_encrypt_ecb
from posp.crypto.pinblock import account12, format03_pin, iso0_clear, iso0_pin
from tests.hsm_engine.conftest import Hsm

h = bytes.fromhex
PVK = "0123456789ABCDEFFEDCBA9876543210"
ZPK2 = "4C4C4C4C4C4C4C4C3D3D3D3D3D3D3D3D"
PAN = "6222021234567890123"
ACCT = account12(PAN)

# psec itself uses the deprecated TripleDES import and short keys.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def test_ca_reproduces_pin_translate_vector(hsm: Hsm, vectors: dict[str, Any]) -> None:
    """CA turns the vector's block under the TPK into the vector's block under the ZPK."""
    v = vectors["pin_translate"]
    tpk = hsm.import_clear("002", v["tpk"])
    zpk = hsm.import_clear("001", v["zpk"])
    fields = hsm.ok(f"CA{tpk}{zpk}12{v['under_tpk']}0101{account12(v['pan'])}")
    assert fields == "06" + v["under_zpk"] + "01"


def test_ca_to_format_03_and_cc_back(hsm: Hsm, vectors: dict[str, Any]) -> None:
    """CA to format 03 then CC back to 01 keeps the PIN."""
    v = vectors["pin_translate"]
    tpk = hsm.import_clear("002", v["tpk"])
    zpk = hsm.import_clear("001", v["zpk"])
    zpk2 = hsm.import_clear("001", ZPK2)
    acct = account12(v["pan"])
    f03 = hsm.ok(f"CA{tpk}{zpk}12{v['under_tpk']}0103{acct}")
    assert f03[18:] == "03"
    assert format03_pin(tdes_decrypt_ecb(h(v["zpk"]), h(f03[2:18]))) == "123456"
    back = hsm.ok(f"CC{zpk}{zpk2}12{f03[2:18]}0301{acct}")
    assert iso0_pin(tdes_decrypt_ecb(h(ZPK2), h(back[2:18])), v["pan"]) == "123456"


def test_ca_pin_without_pan_uses_zero_account(hsm: Hsm) -> None:
    """Terminal format "0 without PAN" travels as format 01 with account 000000000000."""
    tpk = hsm.import_clear("002", PVK)
    zpk = hsm.import_clear("001", ZPK2)
    block = tdes_encrypt_ecb(h(PVK), iso0_clear("4321", None)).hex().upper()
    fields = hsm.ok(f"CA{tpk}{zpk}12{block}0101000000000000")
    assert iso0_pin(tdes_decrypt_ecb(h(ZPK2), h(fields[2:18])), None) == "4321"


@pytest.mark.parametrize(
    ("pin_field", "max_len", "src_fmt", "code"),
    [
        ("06123456FFFFFFFF", "04", "01", "24"),  # PIN longer than the maximum
        ("0F123456FFFFFFFF", "12", "01", "24"),  # length nibble 15
        ("16123456FFFFFFFF", "12", "01", "20"),  # control nibble 1
        ("0612A456FFFFFFFF", "12", "01", "20"),  # hex letter inside the PIN
        ("06123456FFFFFFFF", "12", "05", "23"),  # unsupported format
        ("06123456FFFFFFFF", "13", "01", "15"),  # maximum out of range
    ],
)
def test_ca_errors(hsm: Hsm, pin_field: str, max_len: str, src_fmt: str, code: str) -> None:
    """CA answers 24 / 20 / 23 / 15 for bad lengths, contents, formats and maximum."""
    tpk = hsm.import_clear("002", PVK)
    zpk = hsm.import_clear("001", ZPK2)
    pan_field = int("0000588000000000", 16)
    block = (int(pin_field, 16) ^ pan_field).to_bytes(8, "big")
    enc = tdes_encrypt_ecb(h(PVK), block).hex().upper()
    assert hsm.call(f"CA{tpk}{zpk}{max_len}{enc}{src_fmt}01588000000000")[0] == code


def test_ba_dg_pvv_matches_psec(hsm: Hsm) -> None:
    """BA encrypts to PIN length + 1 digits; DG's PVV equals psec's Visa PVV."""
    lmk_pin = hsm.ok(f"BA1234F{ACCT}")
    assert len(lmk_pin) == 5 and lmk_pin.isdigit() and lmk_pin != "12340"
    pvk = hsm.import_clear("002", PVK)
    pvv = hsm.ok(f"DG{pvk}{lmk_pin}{ACCT}1")
    assert pvv == psec.pin.generate_visa_pvv(h(PVK), "1", "1234", PAN)


def test_ba_accepts_longer_pins_and_refuses_short(hsm: Hsm) -> None:
    """BA takes up to 12 digits; a 3-digit PIN is error 24; a tampered LMK PIN is 14 in DG."""
    assert len(hsm.ok(f"BA123456789012F{ACCT}")) == 13
    assert hsm.call(f"BA123FF{ACCT}")[0] == "24"
    lmk_pin = hsm.ok(f"BA123456F{ACCT}")
    bad = lmk_pin[:-1] + str((int(lmk_pin[-1]) + 1) % 10)
    pvk = hsm.import_clear("002", PVK)
    assert hsm.call(f"DG{pvk}{bad}{ACCT}1")[0] == "14"


@pytest.mark.parametrize(("command", "key_type"), [("DC", "002"), ("EC", "001")])
def test_pin_verification_accepts_right_and_refuses_wrong(
    hsm: Hsm, command: str, key_type: str
) -> None:
    """DC/EC answer 00 for the right PIN and 01 for a wrong one."""
    key = hsm.import_clear(key_type, ZPK2)
    pvk = hsm.import_clear("002", PVK)
    pvv = psec.pin.generate_visa_pvv(h(PVK), "1", "2468", PAN)
    for pin, code in (("2468", "00"), ("2469", "01")):
        block = tdes_encrypt_ecb(h(ZPK2), iso0_clear(pin, PAN)).hex().upper()
        assert hsm.call(f"{command}{key}{pvk}{block}01{ACCT}1{pvv}")[0] == code


def test_dc_accepts_bare_32h_pvk_pair(hsm: Hsm) -> None:
    """A PVK pair may be two single keys under the LMK as bare 32H."""
    tpk = hsm.import_clear("002", ZPK2)
    left = hsm.import_clear("002", PVK[:16])
    right = hsm.import_clear("002", PVK[16:])
    pvv = psec.pin.generate_visa_pvv(h(PVK), "1", "2468", PAN)
    block = tdes_encrypt_ecb(h(ZPK2), iso0_clear("2468", PAN)).hex().upper()
    assert hsm.call(f"DC{tpk}{left}{right}{block}01{ACCT}1{pvv}")[0] == "00"
