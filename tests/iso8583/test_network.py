"""Network-link codec: header, bitmap, field encoding and the MAC block."""

from __future__ import annotations

import pytest

from posp.errors import DecodeError, EncodeError
from posp.iso8583 import (
    Message,
    NetworkDecodeError,
    NetworkFrame,
    NetworkHeader,
    decode_network,
    encode_network,
    is_key_exchange,
    network_mab,
)
from tests.bench.bench_codec import NETWORK_PURCHASE

HEADER = NetworkHeader(destination="00010000", source="48020000")


def encode(mti: str, fields: dict[int, str | bytes]) -> bytes:
    return encode_network(NetworkFrame(HEADER, Message(mti, dict(fields))))


def test_header_layout_and_total_length() -> None:
    body = encode_network(NETWORK_PURCHASE)
    assert body[:2] == b"\x2e\x02"
    assert int(body[2:6]) == len(body)
    assert body[6:17] == b"00010000   " and body[17:28] == b"48020000   "
    assert body[28:46] == b"000" + b"0" + b"00000000" + b"0" + b"00000"
    assert body[46:50] == b"0200"


def test_frame_round_trips_with_header() -> None:
    frame = decode_network(encode_network(NETWORK_PURCHASE))
    assert frame == NETWORK_PURCHASE


def test_swapped_header_exchanges_destination_and_source() -> None:
    header = NetworkHeader("A", "B", "001", "1", "12345678", "2", "00001")
    assert header.swapped() == NetworkHeader("B", "A", "001", "1", "12345678", "2", "00001")


def test_bitmap_bit_one_is_always_set() -> None:
    body = encode("0800", {11: "000001", 70: "301"})
    bitmap = int.from_bytes(body[50:66], "big")
    assert bitmap == (1 << 127) | (1 << (128 - 11)) | (1 << (128 - 70))


def test_bitmap_without_bit_one_is_a_decode_error() -> None:
    body = bytearray(encode("0800", {11: "000001"}))
    body[50] &= 0x7F
    with pytest.raises(DecodeError):
        decode_network(bytes(body))


def test_numeric_fields_are_ascii_and_variable_prefixes_ascii_digits() -> None:
    body = encode("0200", {2: "6225880000000001", 4: "000000000100", 55: b"\x9f\x26"})
    assert body[66:] == b"16" + b"6225880000000001" + b"000000000100" + b"002\x9f\x26"


def test_wrong_total_length_or_header_flags_are_decode_errors() -> None:
    body = encode("0800", {11: "000001"})
    for bad in (body[:2] + b"0001" + body[6:], b"\x2f" + body[1:], body + b"0"):
        with pytest.raises(NetworkDecodeError):
            decode_network(bad)


def test_decode_error_carries_the_partial_frame() -> None:
    body = bytearray(encode("0200", {3: "000000", 11: "000123"}))
    body[-1] = ord("x")
    with pytest.raises(NetworkDecodeError) as info:
        decode_network(bytes(body))
    assert info.value.field == 11
    assert info.value.partial == NetworkFrame(HEADER, Message("0200", {3: "000000"}))


@pytest.mark.parametrize(
    ("fields", "field"),
    [({4: "100"}, 4), ({90: "1" * 41}, 90), ({32: "1" * 12}, 32), ({7: "03151202AB"}, 7)],
)
def test_invalid_values_raise_encode_error_naming_the_field(
    fields: dict[int, str | bytes], field: int
) -> None:
    with pytest.raises(EncodeError) as info:
        encode("0200", fields)
    assert info.value.field == field


def test_header_ids_longer_than_eleven_are_refused() -> None:
    with pytest.raises(EncodeError):
        encode_network(NetworkFrame(NetworkHeader("1" * 12, "2"), Message("0800")))


def test_mab_joins_listed_fields_in_order_with_prefixes_and_f90_prefix() -> None:
    message = Message(
        "0420",
        {
            2: "6225880000000001",
            3: "000000",
            4: "000000010000",
            7: "0315120210",
            11: "000123",
            14: "2812",  # not in the MAB
            32: "48020000",
            39: "98",
            41: "12345678",
            42: "123456789012345",
            52: b"\x01" * 8,  # not in the MAB
            90: "0200" + "000122" + "0315120200" + "00048020000" + "00048020000",
            102: "6225880000000001",
        },
    )
    assert network_mab(message) == (
        b"0420 166225880000000001 000000 000000010000 0315120210 000123 0848020000 98 "
        b"12345678 123456789012345 02000001220315120200 166225880000000001"
    )


def test_key_exchange_mab_adds_53_70_and_100() -> None:
    message = Message(
        "0800",
        {7: "0315120210", 11: "000001", 48: "X" * 38, 53: "1000000000000000", 70: "101"},
    )
    message[100] = "00010000"
    assert is_key_exchange(message)
    assert network_mab(message) == (b"0800 0315120210 000001 1000000000000000 101 0800010000")
    assert network_mab(message, key_exchange=False) == b"0800 0315120210 000001"


def test_echo_is_not_a_key_exchange() -> None:
    assert not is_key_exchange(Message("0800", {70: "301"}))
