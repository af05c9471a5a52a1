"""Data commands M0/M2 and MAC commands M6/M8 against posp.crypto."""

from __future__ import annotations

import pytest

from posp.crypto.des import tdes_encrypt_ecb
from posp.crypto.mac import cup_ecb_mac, iso9797_alg1, iso9797_alg3
from tests.hsm_engine.conftest import Hsm

h = bytes.fromhex
TDK = "1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A"
ZAK = "0123456789ABCDEFFEDCBA9876543210"
TAK8 = "5DBF7F38A146FD5D"
DATA = b"0200 purchase \x19 with a delimiter inside"


def m_msg(data: bytes) -> bytes:
    return f"{len(data):04X}".encode() + data


def mac_cmd(
    code: str, key: str, *, fmt: str = "0", alg: str = "03", pad: str = "1", kt: str = "008"
) -> bytes:
    """M6/M8 up to the message length: mode 0 + format + algorithm + padding + type + key."""
    return f"{code}0{fmt}{alg}{pad}{kt}{key}".encode()


def test_m2_decrypts_hex_and_binary(hsm: Hsm) -> None:
    """M2 mode 00 decrypts hex input to hex output and binary to binary; M0 inverts it."""
    key = hsm.import_clear("00B", TDK)
    clear = h("6225880000000001D2812101")[:8] + bytes(8)
    enc = tdes_encrypt_ecb(h(TDK), clear)
    fields = hsm.ok(f"M2001100B{key}{len(enc) * 2:04X}{enc.hex().upper()}")
    assert fields == f"{len(clear) * 2:04X}" + clear.hex().upper()
    raw = hsm.raw(f"M2000000B{key}".encode() + m_msg(enc))
    assert raw[8:] == b"0010" + clear
    assert hsm.ok(f"M0001100B{key}0020{clear.hex().upper()}")[4:] == enc.hex().upper()


def test_m2_rejects_partial_blocks_and_bad_flags(hsm: Hsm) -> None:
    """M2 answers 06 for a partial block, 02 mode, 03/04 formats, 05 key type."""
    key = hsm.import_clear("00B", TDK)
    assert hsm.call(f"M2001100B{key}000E{'0' * 14}")[0] == "06"
    assert hsm.call(f"M2011100B{key}0010{'0' * 16}")[0] == "02"
    assert hsm.call(f"M2007100B{key}0010{'0' * 16}")[0] == "03"
    assert hsm.call(f"M2001700B{key}0010{'0' * 16}")[0] == "04"
    assert hsm.call(f"M20011001{key}0010{'0' * 16}")[0] == "05"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("01", lambda k, d: iso9797_alg1(k, d)[:4].hex().upper()),
        ("03", lambda k, d: iso9797_alg3(k, d)[:4].hex().upper()),
        ("13", lambda k, d: iso9797_alg3(k, d).hex().upper()),
        ("09", lambda k, d: cup_ecb_mac(k, d).hex().upper()),
    ],
)
def test_m6_matches_independent_mac_and_m8_verifies(hsm: Hsm, algorithm: str, expected) -> None:  # type: ignore[no-untyped-def]
    """M6 equals posp.crypto's MAC for 01/03/13/09; M8 answers 00, then 01 when altered."""
    key = hsm.import_clear("008", ZAK)
    mac = hsm.ok(mac_cmd("M6", key, alg=algorithm) + m_msg(DATA))
    assert mac == expected(h(ZAK), DATA)
    verify = mac_cmd("M8", key, alg=algorithm) + m_msg(DATA)
    assert hsm.call(verify + mac.encode())[0] == "00"
    wrong = ("0" if mac[0] != "0" else "1") + mac[1:]
    assert hsm.call(verify + wrong.encode())[0] == "01"


def test_m6_single_tak_and_hex_input_and_padding(hsm: Hsm) -> None:
    """TAK (003) single DES alg 1; hex input; padding 2; padding 1 adds no block to 16 bytes."""
    tak = hsm.import_clear("003", TAK8)
    data = bytes(range(16))
    assert hsm.ok(mac_cmd("M6", tak, alg="01", kt="003") + m_msg(data)) == (
        iso9797_alg1(h(TAK8), data)[:4].hex().upper()
    )
    hex_data = data.hex().upper().encode()
    cmd = mac_cmd("M6", tak, fmt="1", alg="01", pad="2", kt="003")
    assert hsm.ok(cmd + m_msg(hex_data)) == (iso9797_alg1(h(TAK8), data, 2)[:4].hex().upper())
    assert iso9797_alg1(h(TAK8), data, 1) == iso9797_alg1(h(TAK8), data, 0)


def test_m6_errors(hsm: Hsm) -> None:
    """M6: 27 alg 3 with a single key, 04 algorithm, 09 padding, 05 key type, 06, 80."""
    tak = hsm.import_clear("003", TAK8)
    msg = m_msg(b"12345678")
    assert hsm.call(mac_cmd("M6", tak, kt="003") + msg)[0] == "27"
    assert hsm.call(mac_cmd("M6", tak, alg="05", kt="003") + msg)[0] == "04"
    assert hsm.call(mac_cmd("M6", tak, alg="01", pad="7", kt="003") + msg)[0] == "09"
    assert hsm.call(mac_cmd("M6", tak, alg="01", kt="001") + msg)[0] == "05"
    assert hsm.call(mac_cmd("M6", tak, alg="01", pad="0", kt="003") + m_msg(b"123"))[0] == "06"
    assert hsm.call(mac_cmd("M6", tak, alg="01", kt="003") + b"0010short")[0] == "80"
    assert hsm.call(mac_cmd("M6", tak, fmt="5", alg="01", kt="003") + msg)[0] == "03"
    assert hsm.call(b"M61" + mac_cmd("M6", tak, alg="01", kt="003")[3:] + msg)[0] == "02"


def test_m8_trailer_after_binary_data_is_echoed(hsm: Hsm) -> None:
    """A 0x19 inside the message is data; the one after the MAC starts the trailer."""
    key = hsm.import_clear("008", ZAK)
    mac = hsm.ok(mac_cmd("M6", key) + m_msg(DATA))
    reply = hsm.raw(mac_cmd("M8", key) + m_msg(DATA) + mac.encode() + b"\x19TRL")
    assert reply == b"0001M900\x19TRL"
