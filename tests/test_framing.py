"""Length-prefix framers: chunking independence, limits, prefix errors."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posp.errors import EncodeError, FramingError
from posp.framing import (
    MAX_FRAME_DEFAULT,
    AsciiLengthFramer,
    BinaryLengthFramer,
    frame_ascii,
    frame_binary,
)

bodies = st.lists(st.binary(max_size=300), max_size=8)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=200)
@given(bodies, st.lists(st.integers(0, 10_000), max_size=20))
def test_binary_framer_output_does_not_depend_on_chunking(
    frames: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(frame_binary(f) for f in frames)
    framer = BinaryLengthFramer()
    out = [body for chunk in chunked(stream, cuts) for body in framer.feed(chunk)]
    assert out == frames and framer.buffered == 0


@settings(max_examples=200)
@given(bodies, st.lists(st.integers(0, 10_000), max_size=20))
def test_ascii_framer_output_does_not_depend_on_chunking(
    frames: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(frame_ascii(f) for f in frames)
    framer = AsciiLengthFramer()
    out = [body for chunk in chunked(stream, cuts) for body in framer.feed(chunk)]
    assert out == frames and framer.buffered == 0


@settings(max_examples=50)
@given(bodies)
def test_framers_accept_one_byte_at_a_time(frames: list[bytes]) -> None:
    for framer, frame in ((BinaryLengthFramer(), frame_binary), (AsciiLengthFramer(), frame_ascii)):
        stream = b"".join(frame(f) for f in frames)
        out = [body for i in range(len(stream)) for body in framer.feed(stream[i : i + 1])]
        assert out == frames


def test_partial_frame_is_buffered() -> None:
    framer = BinaryLengthFramer()
    assert framer.feed(b"\x00\x05abc") == []
    assert framer.buffered == 5
    assert framer.feed(b"de\x00") == [b"abcde"]
    assert framer.buffered == 1


@given(st.integers(MAX_FRAME_DEFAULT + 1, 0xFFFF))
def test_oversize_binary_frame_is_rejected_from_its_prefix(size: int) -> None:
    framer = BinaryLengthFramer()
    with pytest.raises(FramingError, match=f"frame of {size} bytes exceeds {MAX_FRAME_DEFAULT}"):
        framer.feed(size.to_bytes(2, "big"))
    with pytest.raises(FramingError):
        framer.feed(b"")


def test_oversize_ascii_frame_is_rejected_with_a_custom_limit() -> None:
    framer = AsciiLengthFramer(max_frame_bytes=100)
    assert framer.feed(b"0100" + bytes(100)) == [bytes(100)]
    with pytest.raises(FramingError):
        framer.feed(b"0101")


def test_non_digit_ascii_length_is_a_framing_error() -> None:
    with pytest.raises(FramingError):
        AsciiLengthFramer().feed(b"01a0")


def test_zero_length_binary_frame_is_returned_empty() -> None:
    assert BinaryLengthFramer().feed(b"\x00\x00\x00\x01x") == [b"", b"x"]


def test_frame_builders_prefix_the_length_and_refuse_oversize() -> None:
    assert frame_binary(b"abc") == b"\x00\x03abc"
    assert frame_ascii(b"abc") == b"0003abc"
    with pytest.raises(EncodeError):
        frame_binary(bytes(0x10000))
    with pytest.raises(EncodeError):
        frame_ascii(bytes(10_000))


@settings(max_examples=200)
@given(bodies, st.binary(max_size=40), st.lists(st.integers(0, 10_000), max_size=20))
def test_the_framer_holds_exactly_the_incomplete_tail(
    frames: list[bytes], tail: bytes, cuts: list[int]
) -> None:
    """Between frames the framer holds nothing (no buffer allocated: the switch
    keeps one framer per idle connection); mid-frame it holds exactly the bytes
    of the incomplete frame, and the rest of that frame completes it."""
    stream = b"".join(frame_binary(b) for b in frames)
    framer = BinaryLengthFramer()
    out: list[bytes] = []
    for chunk in chunked(stream, cuts):
        out += framer.feed(chunk)
    assert out == frames
    assert framer.buffered == 0
    assert framer._buffer == b"" and isinstance(framer._buffer, bytes)
    partial = frame_binary(tail + b"!")[:-1]  # one byte short of a whole frame
    assert framer.feed(partial) == []
    assert framer.buffered == len(partial)
    assert framer.feed(b"!") == [tail + b"!"]
    assert framer.buffered == 0
