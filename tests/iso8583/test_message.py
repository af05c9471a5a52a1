"""Message value object: mapping API, equality, masked rendering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posp.iso8583 import Message, mask_pan
from tests.bench.bench_codec import NETWORK_PURCHASE, PURCHASE

PAN = "6225880000000001"
TRACK2 = "6225880000000001=2812101000000000000"


def test_mask_pan_keeps_first_six_and_last_four() -> None:
    assert mask_pan(PAN) == "622588******0001"
    assert mask_pan("6225881234567890123") == "622588*********0123"


def test_mask_pan_of_a_short_value_keeps_only_the_last_four() -> None:
    assert mask_pan("123456789012") == "********9012"
    assert mask_pan("12") == "12"


@given(st.text("0123456789", min_size=13, max_size=19))
def test_mask_pan_never_reveals_more_than_ten_digits(pan: str) -> None:
    masked = mask_pan(pan)
    assert len(masked) == len(pan) and masked.count("*") == len(pan) - 10


def test_repr_masks_pan_and_hides_track_pin_block_ic_data_and_mac() -> None:
    text = repr(PURCHASE.message)
    assert "622588******0001" in text
    assert PAN not in text
    assert TRACK2 not in text and "2812101" not in text
    for secret in (52, 55, 64):
        value = PURCHASE.message[secret]
        assert isinstance(value, bytes)
        assert value.hex() not in text.lower() and repr(value) not in text
        assert f"{secret}: <{len(value)} bytes>" in text
    assert str(PURCHASE.message) == text


def test_repr_hides_network_key_data_and_mac() -> None:
    message = NETWORK_PURCHASE.message.copy()
    message[48] = "0123456789ABCDEF0123456789ABCDEF" + "A1B2C3"
    text = repr(message)
    assert "0123456789ABCDEF" not in text and "A1B2C3" not in text
    assert "48: <38 chars>" in text and "128: <8 bytes>" in text


def test_repr_hides_f62_key_block_and_f48_batch_records() -> None:
    message = Message("0810", {62: bytes(range(24)), 48: "01" + "00000001" + PAN.zfill(20)})
    text = repr(message)
    assert PAN not in text and "62: <24 bytes>" in text and "48: <30 chars>" in text


def test_repr_shows_clear_fields() -> None:
    assert "41: '12345678'" in repr(PURCHASE.message)
    assert repr(PURCHASE.message).startswith("Message('0200', {")


def test_mapping_api_and_equality() -> None:
    message = Message("0200", {3: "000000"})
    message[4] = "000000000100"
    assert 4 in message and message[4] == "000000000100" and message.get(5) is None
    assert message.text(3) == "000000"
    copy = message.copy()
    assert copy == message and copy is not message
    del copy[4]
    assert copy != message and copy.pop(3) == "000000" and copy.pop(3) is None
    assert Message("0200") != Message("0210") and Message("0200") != "0200"


def test_text_refuses_binary_and_absent_fields() -> None:
    message = Message("0200", {52: b"\x00" * 8})
    with pytest.raises(TypeError):
        message.text(52)
    with pytest.raises(KeyError):
        message.text(2)
