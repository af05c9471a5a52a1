"""decode_network keeps each field's wire text: the texts are what the encoder gives for
the decoded values, so a MAB built from them equals network_mab, and the decoder gives
the dialect loop's values and errors."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posp.errors import DecodeError, EncodeError
from posp.iso8583 import (
    NETWORK,
    NETWORK_FIELDS,
    EncodedNetworkMessage,
    Message,
    NetworkFrame,
    NetworkHeader,
    decode_network,
    encode_network,
    network_mab,
)
from posp.iso8583.message import FieldValue
from posp.iso8583.network import HEADER_BYTES
from tests.bench.bench_codec import NETWORK_PURCHASE
from tests.iso8583.strategies import messages
from tests.iso8583.test_properties import headers

_FIELDS_START = HEADER_BYTES + 4
NETWORK_BODY = encode_network(NETWORK_PURCHASE)


def _dialect_decode(body: bytes) -> tuple[dict[int, FieldValue], tuple[object, ...] | None]:
    """What the generic dialect loop decodes (fields so far, and the error if any)."""
    fields: dict[int, FieldValue] = {}
    try:
        end = NETWORK.decode_fields(body, _FIELDS_START, fields)
    except DecodeError as exc:
        return fields, (exc.reason, exc.field, exc.offset)
    if end != len(body):
        return fields, ("trailing", None, end)
    return fields, None


def _network_decode(body: bytes) -> tuple[dict[int, FieldValue], tuple[object, ...] | None]:
    try:
        frame = decode_network(body)
    except DecodeError as exc:
        partial = getattr(exc, "partial", None)
        fields = partial.message.fields if partial is not None else {}
        if exc.reason.endswith("bytes after the last field"):
            return fields, ("trailing", None, exc.offset)
        return fields, (exc.reason, exc.field, exc.offset)
    return frame.message.fields, None


def _assert_texts_are_the_encoding(frame: NetworkFrame) -> None:
    fields = frame.message.fields
    assert list(frame.texts) == list(fields)
    for n, value in fields.items():
        assert frame.texts[n] == NETWORK.encode_field(n, value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(NETWORK_FIELDS), headers, st.booleans())
def test_kept_texts_are_the_wire_encoding_and_give_network_mab(
    message: Message, header: NetworkHeader, key_exchange: bool
) -> None:
    frame = decode_network(encode_network(NetworkFrame(header, message)))
    _assert_texts_are_the_encoding(frame)
    received = EncodedNetworkMessage.received(frame)
    assert received.mab(key_exchange=key_exchange) == network_mab(
        frame.message, key_exchange=key_exchange
    )
    assert received.mab() == network_mab(frame.message)
    assert received.body(frame.header) == encode_network(frame)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_decoder_matches_the_dialect_loop_on_corrupted_frames(data: st.DataObject) -> None:
    """Flip, cut or splice bytes after the header: same fields, same error and offset."""
    mutated = bytearray(NETWORK_BODY)
    for _ in range(data.draw(st.integers(0, 4))):
        pos = data.draw(st.integers(_FIELDS_START, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(_FIELDS_START, len(mutated)))
    body = bytes(mutated[:cut]) + data.draw(st.binary(max_size=8))
    body = body[:2] + b"%04d" % len(body) + body[6:]  # keep the header's total valid
    assert _network_decode(body) == _dialect_decode(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=200))
def test_decoder_matches_the_dialect_loop_on_arbitrary_fields(tail: bytes) -> None:
    head = NETWORK_BODY[:_FIELDS_START]
    body = head + b"\x80" + tail[1:]
    body = body[:2] + b"%04d" % len(body) + body[6:]
    assert _network_decode(body) == _dialect_decode(body)


def test_undefined_field_and_bad_prefix_errors_match_the_dialect_loop() -> None:
    """Field 5 is not in the table; F2's LL prefix is not digits."""
    head = NETWORK_BODY[:_FIELDS_START]
    for fields in (
        bytes([0x88]) + bytes(15) + b"123",  # bit 1 + F5
        bytes([0xC0]) + bytes(15) + b"x9123",  # bit 1 + F2 with prefix "x9"
        bytes([0xC0]) + bytes(15) + b"20" + b"1" * 20,  # F2 longer than 19
        bytes([0xA0]) + bytes(15) + b"12345",  # F3 truncated
        bytes([0xA0]) + bytes(15) + b"12a456",  # F3 not digits
    ):
        body = head + fields
        body = body[:2] + b"%04d" % len(body) + body[6:]
        assert _network_decode(body) == _dialect_decode(body)
        assert _dialect_decode(body)[1] is not None


def test_received_message_is_not_encoded_again() -> None:
    """The MAB of a received frame comes from its texts (same object, no copy)."""
    frame = decode_network(NETWORK_BODY)
    received = EncodedNetworkMessage.received(frame)
    assert received.texts is frame.texts
    assert received.mab() == network_mab(NETWORK_PURCHASE.message)


def test_a_frame_without_texts_for_every_field_is_encoded() -> None:
    """Hand-built frames (no texts), and fields added after decoding, are encoded."""
    hand_built = NetworkFrame(NETWORK_PURCHASE.header, NETWORK_PURCHASE.message.copy())
    assert EncodedNetworkMessage.received(hand_built).mab() == network_mab(hand_built.message)
    frame = decode_network(NETWORK_BODY)
    frame.message[39] = "00"
    assert EncodedNetworkMessage.received(frame).mab() == network_mab(frame.message)


def test_texts_are_neither_compared_nor_shown() -> None:
    """Frames compare by header and message; the repr leaks no PIN block or track."""
    frame = decode_network(NETWORK_BODY)
    assert frame == NetworkFrame(NETWORK_PURCHASE.header, NETWORK_PURCHASE.message)
    assert "texts" not in repr(frame)
    assert "6225880000000001=2812" not in repr(frame)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(NETWORK_FIELDS), messages(NETWORK_FIELDS), st.data())
def test_a_response_reusing_request_texts_encodes_like_a_fresh_one(
    request: Message, other: Message, data: st.DataObject
) -> None:
    """Echoed fields (the same objects, or equal copies) take the request's texts;
    changed or new fields are encoded; MAB and body equal those of a fresh encoding."""
    body = encode_network(NetworkFrame(NetworkHeader("1", "2"), request))
    received = EncodedNetworkMessage.received(decode_network(body))
    echoed = data.draw(st.lists(st.sampled_from(sorted(received.message.fields) or [2])))
    fields = dict(other.fields)
    for n in echoed:
        if n in received.message.fields:
            value = received.message.fields[n]
            if data.draw(st.booleans()):  # an equal value, another object
                value = bytes(bytearray(value)) if isinstance(value, bytes) else (value + ".")[:-1]
            fields[n] = value
    response = Message(other.mti, fields)
    reused = EncodedNetworkMessage(response, reuse=received)
    fresh = EncodedNetworkMessage(response.copy())
    for n in echoed:  # an echoed value, equal and of the same type, takes the text over
        if n in response.fields and n in received.texts:
            assert reused.texts[n] is received.texts[n]
    assert reused.texts == fresh.texts
    assert reused.mab() == fresh.mab()
    header = NetworkHeader("2", "1")
    assert reused.body(header) == fresh.body(header)


class _Code(StrEnum):
    PURCHASE = "000000"


def test_an_equal_value_of_another_type_is_encoded_and_refused() -> None:
    """A ``bytearray`` equal to a PIN block, or a ``str`` subclass equal to a
    processing code, does not take over the request's text: it is refused as a
    fresh encoding refuses it (EncodeError naming the field; the compiled build
    refuses a value that is neither ``str`` nor ``bytes`` earlier, TypeError)."""
    received = EncodedNetworkMessage.received(decode_network(NETWORK_BODY))
    pin_block = received.message.fields[52]
    assert isinstance(pin_block, bytes) and received.message.fields[3] == _Code.PURCHASE
    others: dict[int, Any] = {52: bytearray(pin_block), 3: _Code.PURCHASE}
    for n, other in others.items():
        fields: dict[int, Any] = dict(received.message.fields)
        fields[n] = other
        assert fields[n] == received.message.fields[n]
        with pytest.raises((EncodeError, TypeError)) as fresh:
            EncodedNetworkMessage(Message("0210", dict(fields)))
        with pytest.raises((EncodeError, TypeError)) as reused:
            EncodedNetworkMessage(Message("0210", fields), reuse=received)
        assert type(fresh.value) is type(reused.value)
        if isinstance(fresh.value, EncodeError) and isinstance(reused.value, EncodeError):
            assert fresh.value.field == reused.value.field == n
