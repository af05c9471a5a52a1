"""KQ → KR in the engine: ARQC verification and ARPC generation, binary fields with
0x19 anywhere, IMK-AC provisioning as key type 109, and each malformed field's code."""

from __future__ import annotations

from typing import Any

import pytest

from hsm_sim.commands import COMMANDS
from hsm_sim.metrics import KNOWN_COMMANDS
from posp.crypto.des import adjust_odd_parity, tdes_encrypt_ecb
from posp.crypto.emv import CardKeys, Scheme, pan_psn_block
from tests.hsm_engine.conftest import Hsm, arqc_with_0x19, lmk_encrypt

h = bytes.fromhex
# The vector's IMK-AC without its parity bits set; DES ignores them, the HSM checks them.
IMK = adjust_odd_parity(h("F0C34A8124CEE0A91A0B034AA97D6EAC"))
ZMK = h("0808080808080808" * 2)


def kq(
    mode: str,
    scheme: int,
    mk_ac: str,
    pan_psn: bytes,
    atc: bytes,
    un: bytes,
    data: bytes,
    arqc: bytes,
    arc: bytes = b"00",
    *,
    length: bytes | None = None,
    delimiter: bytes = b";",
) -> bytes:
    size = b"%02X" % len(data) if length is None else length
    return b"KQ%b%d%b" % (mode.encode(), scheme, mk_ac.encode()) + b"".join(
        (pan_psn, atc, un, size, data, delimiter, arqc, arc)
    )


def _vector(vectors: dict[str, Any]) -> dict[str, Any]:
    case: dict[str, Any] = vectors["emv"]["pboc_cvn01"][0]
    return case


def _vector_kq(hsm: Hsm, v: dict[str, Any], mode: str, arc_hex: str, arqc: str = "") -> bytes:
    mk_ac = lmk_encrypt("109", adjust_odd_parity(h(v["imk_ac"])), "U")
    return kq(
        mode,
        2,
        mk_ac,
        pan_psn_block(v["pan"], v["psn"]),
        h(v["atc"]),
        h(v["tags"]["9F37"]),
        h(v["ac_data"]),
        h(arqc or v["arqc"]),
        h(arc_hex),
    )


def test_vector_arqc_verifies_and_both_arpcs_match(hsm: Hsm, vectors: dict[str, Any]) -> None:
    """Scheme 2 (PBOC v01), mode 1: the vector's ARQC verifies and KR carries its ARPC."""
    v = _vector(vectors)
    for answer in v["arpc"]:
        reply = hsm.raw(_vector_kq(hsm, v, "1", answer["arc_hex"]))
        assert reply[:8] == b"0001KR00"
        assert reply[8:].hex().upper() == answer["arpc"]


def test_mode_0_verifies_only_and_mode_2_makes_an_arpc_without_checking(
    hsm: Hsm, vectors: dict[str, Any]
) -> None:
    """Mode 0 answers 00 with no field; mode 2 answers the ARPC even for a wrong ARQC."""
    v = _vector(vectors)
    assert hsm.raw(_vector_kq(hsm, v, "0", "3030")) == b"0001KR00"
    wrong = "00" * 8
    expected = CardKeys.derive(
        IMK, pan_psn_block(v["pan"], v["psn"]), Scheme.PBOC_V01, h(v["atc"])
    ).arpc(bytes(8), b"00")
    assert hsm.raw(_vector_kq(hsm, v, "2", "3030", wrong)) == b"0001KR00" + expected


@pytest.mark.parametrize("mode", ["0", "1"])
def test_a_bad_arqc_answers_01_and_nothing_else(
    hsm: Hsm, vectors: dict[str, Any], mode: str
) -> None:
    """A flipped ARQC bit: error 01, no ARPC, in both verifying modes."""
    v = _vector(vectors)
    bad = bytes([h(v["arqc"])[0] ^ 0x01]) + h(v["arqc"])[1:]
    assert hsm.raw(_vector_kq(hsm, v, mode, "3030", bad.hex())) == b"0001KR01"


@pytest.mark.parametrize("scheme", list(Scheme))
def test_every_scheme_verifies_its_own_cryptogram(hsm: Hsm, scheme: Scheme) -> None:
    """Schemes 0, 1 and 2: an ARQC made with the scheme's session key verifies, the ARPC
    is the scheme's, and an ARQC made under another scheme does not verify."""
    block, atc, un, data = pan_psn_block("6225880000000001", "01"), h("001C"), h("A1B2C3D4"), b"x"
    keys = CardKeys.derive(IMK, block, scheme, atc, un)
    arqc = keys.cryptogram(data)
    mk_ac = lmk_encrypt("109", IMK, "U")
    reply = hsm.raw(kq("1", scheme, mk_ac, block, atc, un, data, arqc, b"01"))
    assert reply == b"0001KR00" + keys.arpc(arqc, b"01")
    other = Scheme((scheme + 1) % len(Scheme))
    foreign = CardKeys.derive(IMK, block, other, atc, un).cryptogram(data)
    assert hsm.raw(kq("0", scheme, mk_ac, block, atc, un, data, foreign)) == b"0001KR01"


@pytest.mark.parametrize("trailer", [b"", b"\x19TRAILER-19"])
def test_0x19_inside_every_binary_field_is_data_not_a_trailer(hsm: Hsm, trailer: bytes) -> None:
    """PAN/PSN, ATC, UN, data, ARQC and ARC all hold 0x19: KQ still verifies, the ARPC
    (holding 0x19 too) comes back whole, and only a 0x19 after the ARC is a trailer."""
    block = pan_psn_block("6219191919191919", "19")
    atc, un = b"\x19\x19", b"\x19\x00\x00\x19"
    assert 0x19 in block
    keys = CardKeys.derive(IMK, block, Scheme.MASTERCARD_SKD, atc, un)
    data, arqc, arpc = arqc_with_0x19(keys, b"\x19" * 3 + b"amount\x19")
    mk_ac = lmk_encrypt("109", IMK, "U")
    request = kq("1", 1, mk_ac, block, atc, un, data, arqc, b"\x19\x19") + trailer
    assert hsm.raw(request) == b"0001KR00" + arpc + trailer


def test_imk_generated_by_a0_as_type_109_verifies(hsm: Hsm, fixed_keys: list[bytes]) -> None:
    """A0 mode 0 type 109 scheme U makes an IMK-AC under variant 1 of LMK 28-29 that KQ uses."""
    fixed_keys.append(IMK)
    fields = hsm.ok("A00109U")
    mk_ac = fields[:33]
    assert mk_ac == lmk_encrypt("109", IMK, "U")
    block, atc, un = pan_psn_block("6228000100001", "01"), h("0240"), bytes(4)
    arqc = CardKeys.derive(IMK, block, Scheme.PBOC_V01, atc).cryptogram(b"data")
    assert hsm.raw(kq("0", 2, mk_ac, block, atc, un, b"data", arqc)) == b"0001KR00"


def test_imk_imported_under_a_zmk_as_type_109_verifies(hsm: Hsm) -> None:
    """A6 type 109 imports an IMK-AC sent under a ZMK; KQ verifies with the result."""
    zmk = lmk_encrypt("000", ZMK, "U")
    under_zmk = "X" + tdes_encrypt_ecb(ZMK, IMK).hex().upper()
    mk_ac = hsm.ok(f"A6109{zmk}{under_zmk}U")[:33]
    block, atc, un = pan_psn_block("6228000100001", "01"), h("0007"), bytes(4)
    arqc = CardKeys.derive(IMK, block, Scheme.EMV_COMMON, atc).cryptogram(b"data")
    assert hsm.raw(kq("0", 0, mk_ac, block, atc, un, b"data", arqc)) == b"0001KR00"


def test_a_key_stored_under_another_type_is_refused(hsm: Hsm) -> None:
    """The IMK stored as a ZPK (001) decrypts under 109's variant to a key with bad parity."""
    block, atc, un = pan_psn_block("6228000100001", "01"), h("0007"), bytes(4)
    arqc = CardKeys.derive(IMK, block, Scheme.EMV_COMMON, atc).cryptogram(b"data")
    reply = hsm.raw(kq("0", 0, lmk_encrypt("001", IMK, "U"), block, atc, un, b"data", arqc))
    assert reply == b"0001KR10"


def _good(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "mode": "1",
        "scheme": 2,
        "mk_ac": lmk_encrypt("109", IMK, "U"),
        "pan_psn": bytes(8),
        "atc": bytes(2),
        "un": bytes(4),
        "data": b"12345678",
        "arqc": bytes(8),
        "arc": b"00",
    }
    fields.update(overrides)
    length = fields.pop("length", None)
    delimiter = fields.pop("delimiter", b";")
    return kq(**fields, length=length, delimiter=delimiter)


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"KQ", "04"),
        (_good(mode="3"), "04"),
        (_good(mode="A"), "04"),
        (b"KQ1", "05"),
        (_good(scheme=3), "05"),
        (_good(mk_ac="U" + "G" * 32), "15"),
        (_good(mk_ac="T" + "01" * 24), "27"),
        (_good(mk_ac="0123"), "15"),
        (_good(length=b"0G"), "15"),
        (_good(data=b""), "81"),
        (_good(length=b"FF"), "80"),
        (_good(delimiter=b":"), "15"),
        (_good()[:-3], "15"),
        (_good() + b"extra", "15"),
        (_good(mk_ac=lmk_encrypt("109", bytes(16), "U")), "10"),
    ],
    ids=[
        "no-mode",
        "mode-3",
        "mode-A",
        "no-scheme",
        "scheme-3",
        "key-not-hex",
        "key-triple",
        "key-short",
        "length-not-hex",
        "zero-length",
        "data-short",
        "no-semicolon",
        "arqc-arc-short",
        "extra-bytes",
        "key-parity",
    ],
)
def test_malformed_fields_answer_their_code(hsm: Hsm, request_bytes: bytes, code: str) -> None:
    """Each malformed KQ field answers its error code and nothing else."""
    assert hsm.raw(request_bytes) == b"0001KR" + code.encode()


def test_mode_2_accepts_empty_data(hsm: Hsm) -> None:
    """ARPC only (mode 2) needs no transaction data: length 00 is accepted."""
    keys = CardKeys.derive(IMK, bytes(8), Scheme.PBOC_V01, bytes(2))
    assert hsm.raw(_good(mode="2", data=b"")) == b"0001KR00" + keys.arpc(bytes(8), b"00")


def test_kq_is_counted_under_its_own_metrics_label() -> None:
    """Every engine command, KQ included, is a known metrics label (not "other")."""
    assert {code.decode() for code in COMMANDS} <= KNOWN_COMMANDS
    assert "KQ" in KNOWN_COMMANDS
