"""Property tests: round trips for both dialects; arbitrary bytes only ever DecodeError."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from posp.errors import DecodeError
from posp.iso8583 import (
    NETWORK_FIELDS,
    TERMINAL_FIELDS,
    Message,
    NetworkFrame,
    NetworkHeader,
    TerminalFrame,
    decode_network,
    decode_terminal,
    encode_network,
    encode_terminal,
)
from tests.bench.bench_codec import NETWORK_PURCHASE, PURCHASE
from tests.iso8583.strategies import DIGITS, PRINTABLE, messages

NO_SPACE_END = st.text(PRINTABLE, max_size=11).map(lambda s: s.rstrip(" "))
headers = st.builds(
    NetworkHeader,
    destination=NO_SPACE_END,
    source=NO_SPACE_END,
    reserved=st.text(PRINTABLE, min_size=3, max_size=3),
    batch=st.text(DIGITS, min_size=1, max_size=1),
    txn_info=st.text(PRINTABLE, min_size=8, max_size=8),
    user_info=st.text(PRINTABLE, min_size=1, max_size=1),
    reject_code=st.text(DIGITS, min_size=5, max_size=5),
)
PURCHASE_BODY = encode_terminal(PURCHASE)
NETWORK_BODY = encode_network(NETWORK_PURCHASE)


@settings(max_examples=300, deadline=None)
@given(messages(TERMINAL_FIELDS), st.binary(min_size=4, max_size=4))
def test_random_terminal_messages_round_trip(message: Message, addresses: bytes) -> None:
    frame = TerminalFrame(b"\x60" + addresses, "613100000123", message)
    assert decode_terminal(encode_terminal(frame)) == frame


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(NETWORK_FIELDS), headers)
def test_random_network_messages_round_trip(message: Message, header: NetworkHeader) -> None:
    frame = NetworkFrame(header, message)
    body = encode_network(frame)
    assert decode_network(body) == frame


def _secret_values(message: Message) -> list[str]:
    """Values long enough that they cannot appear in an error message by chance."""
    return [v if isinstance(v, str) else v.hex() for v in message.fields.values() if len(v) >= 6]


def _assert_only_safe_decode_errors(decode: object, body: bytes, secrets: list[str]) -> None:
    try:
        decode(body)  # type: ignore[operator]
    except DecodeError as exc:
        text = str(exc)
        assert not any(s in text for s in secrets)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
@example(b"\x60" + bytes(12) + b"\x7f" + bytes(7))
def test_arbitrary_bytes_raise_only_decode_error_on_the_terminal_link(body: bytes) -> None:
    _assert_only_safe_decode_errors(decode_terminal, body, [])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_error_on_the_network_link(body: bytes) -> None:
    _assert_only_safe_decode_errors(decode_network, body, [])


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_corrupted_frames_raise_only_decode_errors_without_values(data: st.DataObject) -> None:
    """Flip, cut or splice bytes of realistic frames: only DecodeError, no value in str()."""
    for decode, body, message in (
        (decode_terminal, PURCHASE_BODY, PURCHASE.message),
        (decode_network, NETWORK_BODY, NETWORK_PURCHASE.message),
    ):
        mutated = bytearray(body)
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(mutated) - 1))
            mutated[pos] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(mutated)))
        tail = data.draw(st.binary(max_size=8))
        _assert_only_safe_decode_errors(
            decode, bytes(mutated[:cut]) + tail, _secret_values(message)
        )
