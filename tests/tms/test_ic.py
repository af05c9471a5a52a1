"""CAPK / AID parameter sets (terminal-link §8): EMV's DF03 check, field widths,
the TLV a 370/380 answer carries, and the import file's all-or-nothing validation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from posp.iso8583.tlv import decode_f55
from posp.tms.ic import CAPK_KIND, Aid, Capk, IcInputError, load_entries

RID = "A000000333"


def _sha1(*parts: str) -> str:
    return hashlib.sha1(bytes.fromhex("".join(parts))).hexdigest().upper()


@given(
    st.binary(min_size=64, max_size=248),
    st.sampled_from(["03", "010001"]),
    st.integers(0, 255),
)
def test_a_capk_with_the_emv_hash_validates_and_its_tlv_carries_every_part(
    modulus: bytes, exponent: str, index: int
) -> None:
    idx, mod = f"{index:02X}", modulus.hex().upper()
    capk = Capk(rid=RID, index=idx, modulus=mod, exponent=exponent, expiry="301231",
                hash=_sha1(RID, idx, mod, exponent))  # fmt: skip
    values = decode_f55(capk.tlv(), field=62).values()
    assert values["9F06"].hex().upper() == RID and values["9F22"] == bytes([index])
    assert values["DF02"] == modulus and values["DF04"].hex() == exponent
    assert values["DF03"].hex().upper() == capk.hash and values["DF05"].hex() == "301231"
    assert decode_f55(capk.ident_tlv(), field=62).values() == {
        "9F06": bytes.fromhex(RID),
        "9F22": bytes([index]),
    }


@given(st.binary(min_size=64, max_size=80), st.integers(0, 19), st.integers(1, 255))
def test_any_changed_hash_byte_is_refused_naming_the_hash(
    modulus: bytes, position: int, flip: int
) -> None:
    mod = modulus.hex().upper()
    good = bytearray(bytes.fromhex(_sha1(RID, "01", mod, "03")))
    good[position] ^= flip
    with pytest.raises(ValidationError, match="DF03"):
        Capk(rid=RID, index="01", modulus=mod, exponent="03", expiry="301231",
             hash=good.hex())  # fmt: skip


@pytest.mark.parametrize("aid", ["A0000003", "A0" * 17, "XYZ0000003"])
def test_an_aid_outside_5_to_16_hex_bytes_is_refused(aid: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Aid(aid=aid)
    assert raised.value.errors()[0]["loc"] == ("aid",)


def test_an_aid_tlv_has_the_section_8_tags_in_order() -> None:
    aid = Aid(aid="A000000333010101", floor_limit_minor=1000, ec_limit_minor=100000)
    tlv = decode_f55(aid.tlv(), field=62)
    assert tlv.tags() == ("9F06", "DF01", "9F09", "DF11", "DF12", "DF13", "9F1B", "DF15",
                          "DF16", "DF17", "DF18", "9F7B")  # fmt: skip
    assert tlv.get("9F1B") == (1000).to_bytes(4, "big")
    assert tlv.get("9F7B") == bytes.fromhex("000000100000")


def test_an_import_file_with_one_bad_entry_names_it_and_returns_nothing(tmp_path: Path) -> None:
    mod = "C1" * 64
    good = {"rid": RID, "index": "01", "modulus": mod, "exponent": "03", "expiry": "301231",
            "hash": _sha1(RID, "01", mod, "03")}  # fmt: skip
    path = tmp_path / "capks.json"
    path.write_text(json.dumps([good, {**good, "expiry": "301399"}]))
    with pytest.raises(IcInputError) as raised:
        load_entries(path, CAPK_KIND)
    assert raised.value.field == "FILE entry 2: expiry"
    path.write_text("{not json")
    with pytest.raises(IcInputError, match="FILE"):
        load_entries(path, CAPK_KIND)
