"""BER-TLV codec of field 55 (IC card data, terminal-link.md §8), pure.

Invariants:
* :func:`decode_f55` never raises anything but :class:`posp.errors.DecodeError`;
  the error names field 55 and the byte offset (within the field) where the
  data went wrong, never a value.
* Tags are upper-case hex strings (``"9F26"``), values are bytes; order and
  repeated tags are kept as they came.
* Multi-byte tags (first byte's low five bits all set, then bytes with the
  high bit set until the last) up to :data:`MAX_TAG_BYTES`; lengths in short
  form or long form ``81``/``82``/``83``; the indefinite form ``80`` is refused.
* A constructed tag (bit 6 of its first byte, e.g. 71/72 issuer scripts) is
  decoded into its children too, up to :data:`MAX_DEPTH` levels; its value
  bytes are kept as well, so re-encoding never changes them.
* ``decode_f55(encode_tlvs(items)) == items``; ``encode`` writes lengths in
  their shortest form, so input in that form round-trips byte for byte.
* ``repr`` shows a value only for tags in :data:`CLEAR_TAGS` (terminal data:
  amounts, dates, TVR, …); cryptograms, issuer application data, track 2,
  PAN, cardholder name and every other tag show as ``<n bytes>``.
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from posp.errors import DecodeError, EncodeError

F55_FIELD = 55
MAX_TAG_BYTES = 3
MAX_DEPTH = 4
_MAX_LENGTH_BYTES = 3
_CONSTRUCTED = 0x20
_MULTI_BYTE_TAG = 0x1F

#: Tags whose values are terminal or transaction data and may appear in a repr or log.
CLEAR_TAGS: frozenset[str] = frozenset(
    {
        "4F",  # AID
        "82",  # application interchange profile
        "84",  # dedicated file name (AID)
        "8A",  # authorisation response code
        "95",  # terminal verification results
        "9A",  # transaction date
        "9C",  # transaction type
        "5F2A",  # transaction currency
        "9F02",  # amount, authorised
        "9F03",  # amount, other
        "9F06",  # AID (terminal)
        "9F09",  # application version number
        "9F1A",  # terminal country
        "9F1E",  # interface device serial number
        "9F27",  # cryptogram information data
        "9F33",  # terminal capabilities
        "9F34",  # CVM results
        "9F35",  # terminal type
        "9F36",  # application transaction counter
        "9F37",  # unpredictable number
        "9F41",  # transaction sequence counter
        "DF31",  # issuer script results
    }
)


class Tlv(NamedTuple):
    """One data object: its tag, its value bytes and, when constructed, its children.
    (A named tuple: a request F55 makes twenty of these per decode.)"""

    tag: str
    value: bytes
    children: tuple[Tlv, ...] | None = None

    @property
    def constructed(self) -> bool:
        return self.children is not None

    def __repr__(self) -> str:
        return _render(self)


def _render(item: Tlv) -> str:
    if item.children is not None:
        return f"{item.tag}{{{', '.join(_render(child) for child in item.children)}}}"
    if item.tag in CLEAR_TAGS:
        return f"{item.tag}={item.value.hex().upper()}"
    return f"{item.tag}=<{len(item.value)} bytes>"


class F55:
    """An ordered list of top-level data objects; compared by value; rendered masked."""

    __slots__ = ("items",)

    def __init__(self, items: Iterable[Tlv] = ()) -> None:
        self.items: tuple[Tlv, ...] = tuple(items)

    def get(self, tag: str) -> bytes | None:
        """The value of the first top-level object with ``tag``, or None."""
        for item in self.items:
            if item.tag == tag:
                return item.value
        return None

    def all(self, tag: str) -> list[Tlv]:
        """Every top-level object with ``tag`` (issuer scripts may repeat 71/72)."""
        return [item for item in self.items if item.tag == tag]

    def tags(self) -> tuple[str, ...]:
        return tuple(item.tag for item in self.items)

    def values(self) -> dict[str, bytes]:
        """Tag -> value of the first occurrence of each top-level tag."""
        out = {item[0]: item[1] for item in self.items}
        if len(out) == len(self.items):
            return out
        out = {}  # a tag repeats: the first occurrence wins, in first-occurrence order
        for item in self.items:
            out.setdefault(item[0], item[1])
        return out

    def encode(self) -> bytes:
        return encode_tlvs(self.items)

    def __contains__(self, tag: object) -> bool:
        return any(item.tag == tag for item in self.items)

    def __iter__(self) -> Iterator[Tlv]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, F55):
            return NotImplemented
        return self.items == other.items

    __hash__ = None  # type: ignore[assignment]  # compared by value, like Message

    def __repr__(self) -> str:
        return f"F55({', '.join(_render(item) for item in self.items)})"

    def __str__(self) -> str:
        return self.__repr__()


# --- decoding ----------------------------------------------------------------


def decode_f55(data: bytes, *, field: int = F55_FIELD) -> F55:
    """Decode field 55 (or another BER-TLV field ``field``) into its data objects.

    A terminal's requests share one layout (the same tags with the same lengths in
    the same order), so the layout of each F55 of primitive objects is kept by total
    length: the next F55 of that length is cut with one ``struct`` unpack, and if
    every tag-and-length header sits where the layout has it, byte for byte, the
    objects are those of the layout's tags with the values cut (each header fixes
    its tag, its value's length and so where the next header starts, which is what
    the object-by-object decoding would have read).  Anything else is decoded
    object by object, the same answer or the same DecodeError."""
    layout = _LAYOUTS.get(len(data))
    if layout is not None:
        parts = layout.unpack(data)
        if parts[::2] == layout.headers:
            return F55(
                map(_new_tlv, _TLV_TYPES, zip(layout.tags, parts[1::2], _NO_CHILDREN, strict=False))
            )
    items = _decode(data, 0, len(data), 0, field)
    if items and all(item[2] is None for item in items):
        _learn(data, items)
    return F55(items)


class _Layout(NamedTuple):
    unpack: Callable[[bytes], tuple[Any, ...]]  # header, value, header, value, …
    headers: tuple[bytes, ...]
    tags: tuple[str, ...]


#: Total length -> the layout of the last F55 of primitive objects decoded with that
#: length (bounded; cleared when full).
_LAYOUTS: dict[int, _Layout] = {}
_LAYOUTS_MAX = 256
_TLV_TYPES = itertools.repeat(Tlv)
_NO_CHILDREN = itertools.repeat(None)


def _learn(data: bytes, items: list[Tlv]) -> None:
    """Keep the layout of ``data``, which decoded into the primitive ``items``."""
    sizes: list[str] = []
    headers: list[bytes] = []
    pos = 0
    for item in items:
        start = pos
        pos += len(item.tag) // 2
        pos += 1 if data[pos] < 0x80 else 1 + (data[pos] & 0x7F)
        headers.append(data[start:pos])
        sizes.append(f"{pos - start}s{len(item.value)}s")
        pos += len(item.value)
    if len(_LAYOUTS) >= _LAYOUTS_MAX:
        _LAYOUTS.clear()
    unpack = struct.Struct("<" + "".join(sizes)).unpack
    _LAYOUTS[len(data)] = _Layout(unpack, tuple(headers), tuple(item.tag for item in items))


# Building the named tuple straight from its fields skips its Python-level __new__
# (four times the cost of the tuple itself, twenty times per request F55).
_new_tlv = tuple.__new__

#: Tag bytes -> tag string, filled as tags are met (bounded; cleared when full).
_TAG_NAMES: dict[bytes, str] = {}
_TAG_NAMES_MAX = 4096


def _decode(data: bytes, pos: int, end: int, depth: int, field: int) -> list[Tlv]:
    items: list[Tlv] = []
    while pos < end:
        start = pos
        first = data[pos]
        # One- and two-byte tags (all of §8's) are read inline; _tag_end does the rest.
        if first & _MULTI_BYTE_TAG != _MULTI_BYTE_TAG:
            if not first:
                raise DecodeError("tag byte 00 is not a tag", field=field, offset=pos)
            pos += 1
        elif pos + 1 < end and data[pos + 1] < 0x80:
            pos += 2
        else:
            pos = _tag_end(data, pos, end, field)
        raw_tag = data[start:pos]
        tag = _TAG_NAMES.get(raw_tag)
        if tag is None:
            tag = _tag_name(raw_tag)
        if pos < end and data[pos] < 0x80:
            length = data[pos]
            pos += 1
        else:
            length, pos = _read_length(data, pos, end, field)
        stop = pos + length
        if stop > end:
            raise DecodeError(f"tag {tag} value runs past the end", field=field, offset=start)
        children = None
        if first & _CONSTRUCTED:
            if depth >= MAX_DEPTH:
                raise DecodeError("constructed tags nested too deep", field=field, offset=start)
            children = tuple(_decode(data, pos, stop, depth + 1, field))
        items.append(_new_tlv(Tlv, (tag, data[pos:stop], children)))
        pos = stop
    return items


def _tag_name(raw_tag: bytes) -> str:
    if len(_TAG_NAMES) >= _TAG_NAMES_MAX:
        _TAG_NAMES.clear()
    name = _TAG_NAMES[raw_tag] = raw_tag.hex().upper()
    return name


def _tag_end(data: bytes, pos: int, end: int, field: int) -> int:
    """Where a multi-byte tag starting at ``pos`` ends: after its first byte come bytes
    with the high bit set, then one without, at most MAX_TAG_BYTES in all."""
    start = pos
    pos += 1
    while True:
        if pos >= end:
            raise DecodeError("tag cut short", field=field, offset=start)
        if pos - start >= MAX_TAG_BYTES:
            raise DecodeError("tag longer than 3 bytes", field=field, offset=start)
        more = data[pos] & 0x80
        pos += 1
        if not more:
            return pos


def _read_length(data: bytes, pos: int, end: int, field: int) -> tuple[int, int]:
    if pos >= end:
        raise DecodeError("length missing", field=field, offset=pos)
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0:
        raise DecodeError("indefinite length is not allowed", field=field, offset=pos)
    if count > _MAX_LENGTH_BYTES:
        raise DecodeError("length field longer than 3 bytes", field=field, offset=pos)
    if pos + 1 + count > end:
        raise DecodeError("length cut short", field=field, offset=pos)
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


# --- encoding ----------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def tag_bytes(tag: str) -> bytes:
    """The wire bytes of a tag string; EncodeError naming field 55 when it is no BER tag.
    Cached: a terminal or issuer encodes the same few dozen tags for every message."""
    try:
        raw = bytes.fromhex(tag)
    except ValueError:
        raise EncodeError("tag is not hex", field=F55_FIELD) from None
    if not raw or len(raw) > MAX_TAG_BYTES or raw[0] == 0:
        raise EncodeError("tag must be 1-3 bytes, not 00", field=F55_FIELD)
    multi = raw[0] & _MULTI_BYTE_TAG == _MULTI_BYTE_TAG
    tail = raw[1:]
    well_formed = (
        bool(tail) and all(b & 0x80 for b in tail[:-1]) and not tail[-1] & 0x80
        if multi
        else not tail
    )
    if not well_formed:
        raise EncodeError("tag bytes are not a BER tag", field=F55_FIELD)
    return raw


def _length_bytes(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    if size > _MAX_LENGTH_BYTES:
        raise EncodeError("value longer than 16 MiB", field=F55_FIELD)
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


#: (tag, value length) -> the object's tag and length bytes, filled as pairs are met
#: (bounded; cleared when full): a terminal or issuer writes the same few dozen.
_HEADERS: dict[tuple[str, int], bytes] = {}
_HEADERS_MAX = 4096


def tlv_header(tag: str, length: int) -> bytes:
    """The tag and length bytes of a primitive object of ``length`` value bytes
    (EncodeError naming field 55 for a tag that is no BER tag or a length over 16 MiB)."""
    header = _HEADERS.get((tag, length))
    if header is None:
        header = tag_bytes(tag) + _length_bytes(length)
        if len(_HEADERS) >= _HEADERS_MAX:
            _HEADERS.clear()
        _HEADERS[(tag, length)] = header
    return header


def encode_tlvs(items: Iterable[Tlv]) -> bytes:
    """The BER-TLV bytes of ``items`` in order (constructed values as their bytes)."""
    return build_f55((item[0], item[1]) for item in items)


def primitive(tag: str, value: bytes) -> Tlv:
    """A primitive data object (the tag is checked when it is encoded)."""
    return Tlv(tag.upper(), value)


def constructed(tag: str, children: Iterable[Tlv]) -> Tlv:
    """A constructed data object (71/72 issuer scripts …) holding ``children``."""
    kids = tuple(children)
    if not tag_bytes(tag)[0] & _CONSTRUCTED:
        raise EncodeError(f"tag {tag} is not a constructed tag", field=F55_FIELD)
    return Tlv(tag.upper(), encode_tlvs(kids), kids)


def build_f55(pairs: Iterable[tuple[str, bytes]]) -> bytes:
    """Field 55 bytes from (tag, value) pairs of primitive objects, in order."""
    parts: list[bytes] = []
    append, headers = parts.append, _HEADERS
    for tag, value in pairs:
        append(headers.get((tag, len(value))) or tlv_header(tag, len(value)))
        append(value)
    return b"".join(parts)


class F55Template:
    """Field 55 in a fixed tag order where some objects never change (a terminal's
    country, currency, capabilities, AID …): those are encoded once, in runs, and
    :meth:`build` writes only the others.  ``build(values)`` is exactly
    ``build_f55((tag, merged[tag]) for tag in order)`` with ``merged`` the constants
    updated by ``values``; a tag of the order missing from both raises KeyError."""

    __slots__ = ("_parts", "_tail", "order")

    def __init__(self, order: Iterable[str], constants: Mapping[str, bytes]) -> None:
        self.order = tuple(order)
        parts: list[tuple[bytes, str]] = []
        run: list[tuple[str, bytes]] = []
        for tag in self.order:
            if tag in constants:
                run.append((tag, constants[tag]))
            else:
                parts.append((build_f55(run), tag))
                run = []
        self._parts = tuple(parts)
        self._tail = build_f55(run)

    @property
    def variable_tags(self) -> tuple[str, ...]:
        """The tags :meth:`build` takes from its ``values``, in order."""
        return tuple(tag for _, tag in self._parts)

    def build(self, values: Mapping[str, bytes]) -> bytes:
        out: list[bytes] = []
        append, headers = out.append, _HEADERS
        for constant, tag in self._parts:
            value = values[tag]
            append(constant)
            append(headers.get((tag, len(value))) or tlv_header(tag, len(value)))
            append(value)
        append(self._tail)
        return b"".join(out)


# --- mandatory tags ------------------------------------------------------------


class F55Use(StrEnum):
    """What a message's F55 is for; each use has its mandatory tags."""

    PURCHASE = "purchase"
    PRE_AUTH = "pre_auth"
    BALANCE = "balance"
    SCRIPT_ADVICE = "script_advice"
    TC_UPLOAD = "tc_upload"


#: An online request's tags in §8's order (9F63 is optional and not listed).
ONLINE_REQUEST_TAGS: tuple[str, ...] = (
    "9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A",
    "82", "9F1A", "9F03", "9F33", "9F34", "9F35", "9F1E", "84", "9F09", "9F41",
)  # fmt: skip

#: Mandatory tags per use (terminal-link.md §8): a missing one is answered 30.
MANDATORY_TAGS: Mapping[F55Use, tuple[str, ...]] = {
    F55Use.PURCHASE: ONLINE_REQUEST_TAGS,
    F55Use.PRE_AUTH: ONLINE_REQUEST_TAGS,
    F55Use.BALANCE: ONLINE_REQUEST_TAGS,
    F55Use.SCRIPT_ADVICE: ("DF31",),
    F55Use.TC_UPLOAD: ("9F26",),
}


def first_missing_tag(f55: F55, use: F55Use) -> str | None:
    """The first mandatory tag of ``use`` (in table order) that ``f55`` lacks, or None."""
    present = {item[0] for item in f55.items}
    mandatory = MANDATORY_TAGS[use]
    if present.issuperset(mandatory):
        return None
    for tag in mandatory:
        if tag not in present:
            return tag
    return None
