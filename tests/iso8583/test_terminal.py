"""Terminal-link codec: spec vectors, field alignment, validation, MAB helpers."""

from __future__ import annotations

from typing import Any

import pytest

from posp.errors import DecodeError, EncodeError
from posp.iso8583 import (
    Message,
    TerminalDecodeError,
    TerminalFrame,
    decode_terminal,
    encode_terminal,
    reply_tpdu,
    response_header,
    terminal_mab,
)

TPDU = bytes.fromhex("6000030000")
HEADER = "603100000000"

PURCHASE_FIELDS: dict[int, str | bytes] = {
    2: "6225880000000001",
    3: "000000",
    4: "000000010000",
    11: "000002",
    14: "2812",
    22: "021",
    25: "00",
    26: "12",
    35: "6225880000000001=2812101000000000000",
    41: "12345678",
    42: "123456789012345",
    49: "156",
    52: bytes.fromhex("802457237533C956"),
    53: "2600000000000000",
    60: "22000001000",
    64: b"2E9903F5",
}


def frame_of(mti: str, fields: dict[int, str | bytes]) -> TerminalFrame:
    return TerminalFrame(TPDU, HEADER, Message(mti, dict(fields)))


def vector_body(vectors: dict[str, Any], name: str) -> bytes:
    raw = bytes.fromhex(vectors[name]["hex"])
    assert int.from_bytes(raw[:2], "big") == len(raw) - 2
    return raw[2:]


def test_signin_vector_decodes_to_its_fields_and_reencodes_byte_for_byte(
    vectors: dict[str, Any],
) -> None:
    vector = vectors["frame_signin_0800"]
    body = vector_body(vectors, "frame_signin_0800")
    frame = decode_terminal(body)
    assert frame.tpdu.hex().upper() == vector["tpdu"]
    assert frame.header == vector["header"]
    expected = {int(k): v for k, v in vector["fields"].items() if k != "t"}
    assert frame.message.mti == vector["fields"]["t"]
    assert frame.message.fields == expected
    assert encode_terminal(frame) == body


def test_purchase_vector_decodes_to_its_fields_and_reencodes_byte_for_byte(
    vectors: dict[str, Any],
) -> None:
    body = vector_body(vectors, "frame_purchase_0200")
    frame = decode_terminal(body)
    assert (frame.tpdu, frame.header, frame.message.mti) == (TPDU, HEADER, "0200")
    assert frame.message.fields == PURCHASE_FIELDS
    assert encode_terminal(frame) == body


def test_f22_is_left_aligned_and_f23_right_aligned() -> None:
    body = encode_terminal(frame_of("0200", {22: "051", 23: "001"}))
    assert body[-4:] == bytes.fromhex("0510 0001")


def test_track2_separator_travels_as_nibble_d() -> None:
    body = encode_terminal(frame_of("0200", {35: "4761=2512"}))
    assert body[-6:] == bytes.fromhex("09 4761D2512 0".replace(" ", ""))
    assert decode_terminal(body).message[35] == "4761=2512"


def test_f64_is_carried_as_eight_ascii_bytes() -> None:
    body = encode_terminal(frame_of("0200", {11: "000001", 64: b"2E9903F5"}))
    assert body.endswith(b"2E9903F5")


@pytest.mark.parametrize("pad", range(16))
def test_any_pad_nibble_is_accepted_on_decode(pad: int) -> None:
    """A 15-digit PAN (left-aligned) and F23 (right-aligned) decode whatever the pad."""
    body = bytearray(encode_terminal(frame_of("0200", {2: "622588000000001", 23: "001"})))
    pan_last = 13 + 8 + 1 + 7  # MTI/bitmap end, LL byte, 8th data byte
    body[pan_last] = (body[pan_last] & 0xF0) | pad
    body[-2] = (pad << 4) | (body[-2] & 0x0F)
    fields = decode_terminal(bytes(body)).message.fields
    assert fields == {2: "622588000000001", 23: "001"}


def test_pad_nibble_zero_is_sent() -> None:
    body = encode_terminal(frame_of("0200", {2: "622588000000001"}))
    assert body[-1] & 0x0F == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({3: "00000"}, 3),
        ({3: "00000A"}, 3),
        ({4: "٠٠٠٠٠٠٠٠٠٠٠٠"}, 4),  # non-ASCII digits
        ({2: "1" * 20}, 2),
        ({41: "1234567"}, 41),
        ({63: "x" * 164}, 63),
        ({55: b"\x00" * 256}, 55),
        ({52: "not bytes"}, 52),
        ({41: b"12345678"}, 41),
        ({35: "12=34=X"}, 35),
        ({41: "1234567é"}, 41),
        ({100: "1"}, 100),
    ],
)
def test_invalid_values_raise_encode_error_naming_the_field(
    fields: dict[int, str | bytes], field: int
) -> None:
    with pytest.raises(EncodeError) as info:
        encode_terminal(frame_of("0200", fields))
    assert info.value.field == field


def test_bad_tpdu_header_or_mti_raise_encode_error() -> None:
    for frame in (
        TerminalFrame(b"\x61" + TPDU[1:], HEADER, Message("0200")),
        TerminalFrame(TPDU, "60310000000", Message("0200")),
        TerminalFrame(TPDU, HEADER, Message("02x0")),
    ):
        with pytest.raises(EncodeError):
            encode_terminal(frame)


def test_tpdu_not_starting_with_60_is_a_decode_error() -> None:
    body = bytearray(encode_terminal(frame_of("0800", {11: "000001"})))
    body[0] = 0x61
    with pytest.raises(TerminalDecodeError) as info:
        decode_terminal(bytes(body))
    assert info.value.offset == 0 and info.value.partial is None


def test_non_digit_n_field_is_a_decode_error_with_partial_frame() -> None:
    """The switch needs TPDU, header, MTI and the fields before the bad one to answer 30."""
    body = bytearray(encode_terminal(frame_of("0200", {3: "000000", 11: "000002"})))
    body[-1] = 0x0A
    with pytest.raises(TerminalDecodeError) as info:
        decode_terminal(bytes(body))
    err = info.value
    assert isinstance(err, DecodeError)
    assert (err.field, err.offset) == (11, len(body) - 3)
    assert err.partial is not None
    assert (err.partial.tpdu, err.partial.header) == (TPDU, HEADER)
    assert err.partial.message == Message("0200", {3: "000000"})


def test_bitmap_bit_one_is_rejected_on_the_terminal_link() -> None:
    body = bytearray(encode_terminal(frame_of("0800", {11: "000001"})))
    body[13] |= 0x80
    with pytest.raises(DecodeError) as info:
        decode_terminal(bytes(body))
    assert info.value.field is None


def test_trailing_bytes_and_truncation_are_decode_errors() -> None:
    body = encode_terminal(frame_of("0800", {11: "000001", 63: "01 "}))
    for bad in (body + b"\x00", body[:-1], body[:12]):
        with pytest.raises(DecodeError):
            decode_terminal(bad)


def test_variable_length_over_the_maximum_is_a_decode_error() -> None:
    body = bytearray(encode_terminal(frame_of("0200", {2: "6225880000000001"})))
    body[21] = 0x20  # LL = 20 > 19
    with pytest.raises(DecodeError) as info:
        decode_terminal(bytes(body))
    assert info.value.field == 2


def test_terminal_mab_runs_from_the_mti_to_before_f64(vectors: dict[str, Any]) -> None:
    body = vector_body(vectors, "frame_purchase_0200")
    assert terminal_mab(body) == body[11:-8]


def test_terminal_mab_requires_f64() -> None:
    with pytest.raises(DecodeError):
        terminal_mab(encode_terminal(frame_of("0800", {11: "000001", 63: "001"})))


def test_reply_tpdu_swaps_destination_and_source() -> None:
    assert reply_tpdu(bytes.fromhex("6000031234")) == bytes.fromhex("6012340003")


def test_response_header_sets_digit_six() -> None:
    assert response_header("603100000000", "3") == "603103000000"
    assert response_header("603100000000") == "603100000000"


def test_encrypted_track_hex_nibbles_round_trip() -> None:
    """Track data encrypted with the TDK (F53 digit 3 = 1) carries hex nibbles A-F;
    they survive encode/decode, with the separator nibble D read back as '='."""
    msg = Message("0200", {3: "000000", 11: "000001", 35: "6225880000000001=2812ABCEF0123"})
    frame = TerminalFrame(bytes.fromhex("6000030000"), "603100000000", msg)
    decoded = decode_terminal(encode_terminal(frame))
    assert decoded.message[35] == "6225880000000001=2812ABCEF0123"
