"""posp.iso8583.tlv: the F55 BER-TLV codec, its masked repr and the mandatory-tag table."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posp.errors import DecodeError, EncodeError
from posp.iso8583 import tlv
from posp.iso8583.tlv import (
    CLEAR_TAGS,
    F55,
    MANDATORY_TAGS,
    ONLINE_REQUEST_TAGS,
    F55Template,
    F55Use,
    Tlv,
    build_f55,
    constructed,
    decode_f55,
    encode_tlvs,
    first_missing_tag,
    primitive,
    tag_bytes,
    tlv_header,
)

h = bytes.fromhex


def _vector_f55(vectors: dict[str, Any]) -> bytes:
    tags = vectors["emv"]["pboc_cvn01"][0]["tags"]
    return build_f55([("9F26", h(vectors["emv"]["pboc_cvn01"][0]["arqc"]))] + [
        (tag, h(value)) for tag, value in tags.items()
    ])  # fmt: skip


def test_decodes_the_vector_tags_in_order(vectors: dict[str, Any]) -> None:
    """The emv vector's tags come back in the order sent, with their values."""
    f55 = decode_f55(_vector_f55(vectors))
    assert f55.tags()[:3] == ("9F26", "9F02", "9F03")
    assert f55.get("9F10") == h("07000103A04002")
    assert f55.get("9F36") == h("0240")
    assert f55.get("DF31") is None
    assert "9F37" in f55 and "57" not in f55


def test_multi_byte_tags_and_long_form_lengths_decode() -> None:
    """Three-byte tags and 81/82/83 lengths decode; encode writes the shortest length."""
    value = bytes(range(200))
    data = h("DF8101") + h("81C8") + value + h("5F2A") + h("820002") + h("0156")
    f55 = decode_f55(data)
    assert f55.items == (Tlv("DF8101", value), Tlv("5F2A", h("0156")))
    assert f55.encode() == h("DF8101") + h("81C8") + value + h("5F2A02") + h("0156")
    big = bytes(70_000)
    assert decode_f55(encode_tlvs([primitive("9F10", big)])).get("9F10") == big


def test_issuer_scripts_71_72_decode_into_children() -> None:
    """A constructed 71 (script id 9F18 + command 86) has its children; a repeat is kept."""
    script = constructed("71", [primitive("9F18", h("00000001")), primitive("86", h("8424000008"))])
    other = constructed("72", [primitive("86", h("80CA9F1700"))])
    data = build_f55([("91", h("C01B237749040E2B3030"))]) + encode_tlvs([script, other, script])
    f55 = decode_f55(data)
    assert [item.tag for item in f55] == ["91", "71", "72", "71"]
    first = f55.all("71")[0]
    assert first.constructed and first.children is not None
    assert [c.tag for c in first.children] == ["9F18", "86"]
    assert f55.encode() == data


@pytest.mark.parametrize(
    ("data", "offset", "reason"),
    [
        ("9F", 0, "tag cut short"),
        ("9F26", 2, "length missing"),
        ("9F2608AABB", 0, "runs past the end"),
        ("9F2680", 2, "indefinite"),
        ("9F2684000000010000", 2, "longer than 3 bytes"),
        ("9F2682AA", 2, "length cut short"),
        ("9F8181810100", 0, "longer than 3 bytes"),
        ("9F270180000100", 4, "00 is not a tag"),
        ("71039F2601", 2, "runs past the end"),
        ("9F270180" + "7108" + "7106" + "7104" + "7102" + "7100", 12, "nested too deep"),
    ],
)
def test_bad_input_is_a_decode_error_naming_field_55_and_offset(
    data: str, offset: int, reason: str
) -> None:
    """Every malformed F55 raises DecodeError with field 55 and the offset of the fault."""
    with pytest.raises(DecodeError, match=reason) as caught:
        decode_f55(h(data))
    assert caught.value.field == 55
    assert caught.value.offset == offset
    assert str(caught.value).startswith(f"field 55 at offset {offset}")


def test_repr_shows_terminal_data_and_hides_card_data() -> None:
    """9F26, 9F10, 57, 5A, 5F20, 9F1F, 9F6B, 91 show as <n bytes>; 9F02 and 95 show."""
    secret = {
        "9F26": "5D016C91005E7CC2",
        "9F10": "07000103A04002",
        "57": "6228480402564890018D49121200000000",
        "5A": "6228480402564890018F",
        "5F20": "5A48414E472F53414E",
        "9F1F": "313233343536",
        "9F6B": "6228480402564890D4912120",
        "91": "C01B237749040E2B3030",
    }
    f55 = decode_f55(build_f55([(t, h(v)) for t, v in secret.items()] + [("9F02", h("0001"))]))
    text = repr(f55)
    for tag, value in secret.items():
        assert value not in text
        assert f"{tag}=<{len(h(value))} bytes>" in text
    assert "9F02=0001" in text
    script = constructed("71", [primitive("86", h("8424000008"))])
    assert repr(decode_f55(encode_tlvs([script]))) == "F55(71{86=<5 bytes>})"
    assert not {"9F26", "9F10", "57", "5A", "5F20", "9F1F", "9F6B", "91"} & CLEAR_TAGS


def test_mandatory_tags_first_missing_in_table_order(vectors: dict[str, Any]) -> None:
    """A full §8 request has nothing missing; dropping 9F33 then 9F10 reports 9F10 first."""
    full = [(tag, b"\x01") for tag in ONLINE_REQUEST_TAGS] + [("9F63", b"\x01")]
    assert first_missing_tag(decode_f55(build_f55(full)), F55Use.PURCHASE) is None
    partial = [(t, v) for t, v in full if t not in ("9F33", "9F10")]
    for use in (F55Use.PURCHASE, F55Use.PRE_AUTH, F55Use.BALANCE):
        assert first_missing_tag(decode_f55(build_f55(partial)), use) == "9F10"
    assert first_missing_tag(F55(), F55Use.SCRIPT_ADVICE) == "DF31"
    assert first_missing_tag(decode_f55(_vector_f55(vectors)), F55Use.TC_UPLOAD) is None
    assert set(MANDATORY_TAGS) == set(F55Use)


@pytest.mark.parametrize("tag", ["", "9F", "1F", "00", "9F8080", "9F818181", "XY", "0101"])
def test_encoding_a_bad_tag_is_an_encode_error(tag: str) -> None:
    """Tags that are not 1-3 byte BER tags raise EncodeError naming field 55."""
    with pytest.raises(EncodeError, match="field 55"):
        tag_bytes(tag)


def test_constructed_refuses_a_primitive_tag() -> None:
    """constructed() needs a tag with the constructed bit (71 yes, 9F26 no)."""
    with pytest.raises(EncodeError):
        constructed("9F26", [])


# --- properties ------------------------------------------------------------------


def _tags(constructed_bit: bool) -> st.SearchStrategy[str]:
    bit = 0x20 if constructed_bit else 0x00
    first = st.integers(1, 0xFF).map(lambda b: (b & ~0x20) | bit).filter(bool)
    single = first.filter(lambda b: b & 0x1F != 0x1F).map(lambda b: f"{b:02X}")
    multi_first = first.map(lambda b: b | 0x1F)
    two = st.tuples(multi_first, st.integers(0, 0x7F)).map(lambda t: f"{t[0]:02X}{t[1]:02X}")
    three = st.tuples(multi_first, st.integers(0x80, 0xFF), st.integers(0, 0x7F)).map(
        lambda t: f"{t[0]:02X}{t[1]:02X}{t[2]:02X}"
    )
    return st.one_of(single, two, three)


_PRIMITIVE = st.builds(primitive, _tags(False), st.binary(max_size=300))
_TLVS = st.recursive(
    _PRIMITIVE,
    lambda inner: st.builds(constructed, _tags(True), st.lists(inner, max_size=4)),
    max_leaves=12,
).filter(lambda item: _depth(item) <= 4)


def _depth(item: Tlv) -> int:
    if item.children is None:
        return 0
    return 1 + max((_depth(child) for child in item.children), default=0)


@given(st.lists(_TLVS, max_size=8))
def test_round_trip_of_any_tlv_list(items: list[Tlv]) -> None:
    """decode(encode(items)) gives the same items, and encoding again the same bytes."""
    data = encode_tlvs(items)
    decoded = decode_f55(data)
    assert decoded.items == tuple(items)
    assert decoded.encode() == data


@given(st.binary(max_size=400))
def test_garbage_raises_only_decode_error(data: bytes) -> None:
    """Random bytes decode or raise DecodeError naming field 55; never another exception."""
    try:
        f55 = decode_f55(data)
    except DecodeError as exc:
        assert exc.field == 55 and 0 <= exc.offset <= len(data)
        return
    assert decode_f55(f55.encode()) == f55
    repr(f55)


@given(st.lists(_TLVS, min_size=1, max_size=4), st.data())
def test_truncated_encodings_raise_decode_error(items: list[Tlv], data: st.DataObject) -> None:
    """Cutting a valid encoding anywhere inside its last object raises DecodeError."""
    encoded = encode_tlvs(items)
    last = len(encode_tlvs(items[-1:]))
    cut = data.draw(st.integers(len(encoded) - last + 1, len(encoded) - 1)) if last > 1 else None
    if cut is None:
        return
    with pytest.raises(DecodeError):
        decode_f55(encoded[:cut])


# --- the layout fast path of decode_f55 and the encoding helpers ------------------


def _object_by_object(data: bytes) -> F55 | DecodeError:
    """decode_f55's answer without its layouts: the plain object-by-object decoding."""
    try:
        return F55(tlv._decode(data, 0, len(data), 0, 55))
    except DecodeError as exc:
        return exc


def _same(answer: F55 | DecodeError, data: bytes) -> None:
    try:
        got: F55 | DecodeError = decode_f55(data)
    except DecodeError as exc:
        got = exc
    if isinstance(answer, DecodeError):
        assert isinstance(got, DecodeError) and (got.field, got.offset) == (55, answer.offset)
    else:
        assert isinstance(got, F55) and got.items == answer.items


_LONG_FORM = st.builds(primitive, _tags(False), st.binary(min_size=0x80, max_size=300))
_PRIMITIVES = st.lists(st.one_of(_PRIMITIVE, _LONG_FORM), min_size=1, max_size=8)


@given(_PRIMITIVES, st.lists(st.tuples(st.integers(0), st.integers(0, 0xFF)), max_size=4))
def test_a_known_layout_decodes_like_the_object_by_object_decoding(
    items: list[Tlv], edits: list[tuple[int, int]]
) -> None:
    """Once a layout is known, an F55 of its length with any bytes changed (values or
    headers) decodes to exactly what the object-by-object decoding gives, or raises
    the same DecodeError; the layout's own bytes come back as the items."""
    data = encode_tlvs(items)
    assert decode_f55(data).items == tuple(items)  # learns the layout
    assert decode_f55(data).items == tuple(items)  # through it
    edited = bytearray(data)
    for at, byte in edits:
        edited[at % len(edited)] = byte
    _same(_object_by_object(bytes(edited)), bytes(edited))


@given(st.lists(_PRIMITIVES, min_size=2, max_size=5))
def test_layouts_of_one_length_never_mix(groups: list[list[Tlv]]) -> None:
    """F55s of different layouts, decoded in turn (each learning its layout), each
    decode to their own items, also when they share a length."""
    encoded = [encode_tlvs(items) for items in groups]
    for _ in range(2):
        for items, data in zip(groups, encoded, strict=True):
            assert decode_f55(data).items == tuple(items)


def test_long_form_lengths_that_are_not_shortest_keep_their_layout() -> None:
    """A value of 5 bytes sent with length 81 05 decodes (and again through its layout)."""
    data = h("9F2681050102030405") + h("9505AABBCCDDEE")
    for _ in range(2):
        assert decode_f55(data).items == (Tlv("9F26", h("0102030405")), Tlv("95", h("AABBCCDDEE")))
    assert _object_by_object(data) == decode_f55(data)


@given(st.lists(st.tuples(_tags(False), st.binary(max_size=300)), max_size=8))
def test_build_f55_writes_what_the_tag_and_length_rules_give(
    pairs: list[tuple[str, bytes]],
) -> None:
    """build_f55 (cached headers) = tag bytes ‖ shortest length ‖ value, per pair."""
    expected = b"".join(tag_bytes(t) + _length(len(v)) + v for t, v in pairs)
    assert build_f55(pairs) == expected
    assert encode_tlvs([primitive(t, v) for t, v in pairs]) == expected


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


@given(
    st.lists(st.tuples(_tags(False), st.binary(max_size=140), st.booleans()), max_size=10),
    st.data(),
)
def test_a_template_builds_what_build_f55_builds(
    spec: list[tuple[str, bytes, bool]], data: st.DataObject
) -> None:
    """F55Template(order, constants).build(values) = build_f55 over the order with the
    constants, whatever runs of constant and variable tags the order has."""
    order = [tag for tag, _, _ in spec]
    constants = {tag: value for tag, value, constant in spec if constant}
    template = F55Template(order, constants)
    values = {tag: data.draw(st.binary(max_size=140)) for tag in template.variable_tags}
    merged = {**constants, **values}
    assert template.build(values) == build_f55((tag, merged[tag]) for tag in order)


def test_a_bad_tag_still_raises_encode_error_through_the_header_cache() -> None:
    """tlv_header checks the tag the first time; a bad one is never cached."""
    for _ in range(2):
        with pytest.raises(EncodeError):
            build_f55([("9F", b"\x01")])
    assert tlv_header("9F26", 8) == h("9F2608")


@given(st.lists(st.tuples(st.sampled_from(["9F26", "95", "71", "9F36"]), st.binary(max_size=4))))
def test_values_keeps_each_tags_first_value_in_first_occurrence_order(
    pairs: list[tuple[str, bytes]],
) -> None:
    """values(): tag -> the first value, keys in the order the tags first appear."""
    f55 = F55(Tlv(tag, value) for tag, value in pairs)
    expected: dict[str, bytes] = {}
    for tag, value in pairs:
        expected.setdefault(tag, value)
    assert list(f55.values().items()) == list(expected.items())
