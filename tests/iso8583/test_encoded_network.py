"""EncodedNetworkMessage: fields encoded once give the same MAB as network_mab and
the same frame body as encode_network, also after setting F128."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posp.errors import EncodeError
from posp.iso8583 import (
    NETWORK_FIELDS,
    EncodedNetworkMessage,
    Message,
    NetworkFrame,
    NetworkHeader,
    decode_network,
    encode_network,
    network_mab,
)
from tests.bench.bench_codec import NETWORK_PURCHASE
from tests.iso8583.strategies import messages
from tests.iso8583.test_properties import headers


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(NETWORK_FIELDS), headers, st.booleans(), st.binary(min_size=8, max_size=8))
def test_encoded_once_equals_mab_and_frame_encoders(
    message: Message, header: NetworkHeader, key_exchange: bool, mac: bytes
) -> None:
    encoded = EncodedNetworkMessage(message)
    assert encoded.mab(key_exchange=key_exchange) == network_mab(message, key_exchange=key_exchange)
    encoded.set(128, mac)
    assert message[128] == mac
    assert encoded.body(header) == encode_network(NetworkFrame(header, message))


def test_the_purchase_sample_encodes_the_same_way() -> None:
    message = NETWORK_PURCHASE.message.copy()
    encoded = EncodedNetworkMessage(message)
    assert encoded.mab() == network_mab(message)
    assert encoded.body(NETWORK_PURCHASE.header) == encode_network(NETWORK_PURCHASE)


def test_an_invalid_field_is_named_before_anything_is_sent() -> None:
    message = NETWORK_PURCHASE.message.copy()
    message[4] = "12x"
    try:
        EncodedNetworkMessage(message)
    except EncodeError as exc:
        assert exc.field == 4
    else:
        raise AssertionError("an invalid F4 encoded")


def test_a_received_frame_keeps_its_texts_and_encodes_what_they_lack() -> None:
    frame = decode_network(encode_network(NETWORK_PURCHASE))
    received = EncodedNetworkMessage.received(frame)
    assert received.texts is frame.texts  # nothing encoded again
    assert received.body(frame.header) == encode_network(NETWORK_PURCHASE)
    # Texts that do not hold exactly the message's fields are not taken.
    partial = EncodedNetworkMessage(frame.message, arrived_texts={})
    assert partial.mab() == network_mab(frame.message)
    assert partial.body(frame.header) == encode_network(NETWORK_PURCHASE)


def test_reuse_and_arrived_texts_exclude_each_other() -> None:
    message = NETWORK_PURCHASE.message.copy()
    with pytest.raises(TypeError, match="exclude each other"):
        EncodedNetworkMessage(message, reuse=EncodedNetworkMessage(message), arrived_texts={})
