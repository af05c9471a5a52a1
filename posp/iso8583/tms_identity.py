"""F59 terminal identity and the 0820 ``362`` status F62 (terminal-link.md §10).

Both are runs of tag + 3-digit length + value.  F59 holds top-level tags of 2
characters; tag ``A2`` carries the identity sub-tags (2 digits): ``01`` device
type, ``02`` hardware serial (TUSN), ``03`` random factor, ``04`` serial
ciphertext, ``05`` application version an..8, ``06`` SIM ICCID, ``07``
location.  The status F62 uses the same layout with 2-digit tags: ``01``
parameter version, ``02`` CAPK version, ``03`` AID version, ``04`` application
version, ``05`` tamper state, and the project extension ``06`` last install
result (``OK`` or the refusal reason, GBK).

Invariants:
* parsers raise only ``DecodeError`` naming the field (59 or 62) and the byte
  offset; renderers raise ``EncodeError``; neither quotes a value.
* Sub-tags are rendered in ascending order; unknown ones are kept (``extra``)
  so a newer terminal's identity survives a round trip.
* ``parse(x.render()) == x`` for every renderable ``x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from posp.errors import DecodeError, EncodeError

_LEN_DIGITS: Final = 3
_MAX_VALUE: Final = 999
IDENTITY_TAG: Final = "A2"
DEVICE_TYPES: Final = {"02": "POS", "03": "mPOS", "04": "smart POS"}
_GEO = re.compile(r"^([+-]\d{1,3}\.\d{1,7})/([+-]\d{1,2}\.\d{1,7})$")
_CELL = re.compile(r"^[0-9A-Za-z:._-]{1,40}$")

Tlv = tuple[str, str]


def read_tlvs(
    data: bytes, *, field_no: int, tag_len: int, encoding: str, base: int = 0
) -> list[Tlv]:
    """``tag + LLL + value`` items in order; lengths count bytes of ``encoding``;
    error offsets are ``base`` + the position in ``data``."""
    items: list[Tlv] = []
    offset = 0
    while offset < len(data):
        head = data[offset : offset + tag_len + _LEN_DIGITS]
        length_text = head[tag_len:]
        tag_ok = head[:tag_len].isascii() and head[:tag_len].decode("ascii").isprintable()
        if len(head) < tag_len + _LEN_DIGITS or not (length_text.isdigit() and tag_ok):
            raise DecodeError("bad tag or length", field=field_no, offset=base + offset)
        start = offset + tag_len + _LEN_DIGITS
        raw = data[start : start + int(length_text)]
        if len(raw) < int(length_text):
            raise DecodeError("value shorter than its length", field=field_no, offset=base + start)
        try:
            value = raw.decode(encoding)
        except UnicodeDecodeError:
            raise DecodeError(
                f"value is not {encoding}", field=field_no, offset=base + start
            ) from None
        if not value.isprintable():
            raise DecodeError("value has control characters", field=field_no, offset=base + start)
        items.append((head[:tag_len].decode("ascii"), value))
        offset = start + len(raw)
    return items


def write_tlvs(items: list[Tlv], *, field_no: int, tag_len: int, encoding: str) -> bytes:
    out = []
    for tag, value in items:
        if len(tag) != tag_len or not tag.isascii() or not tag.isprintable():
            raise EncodeError(f"tag must be {tag_len} ASCII characters", field=field_no)
        try:
            raw = value.encode(encoding)
        except UnicodeEncodeError:
            raise EncodeError(f"tag {tag} value is not {encoding}", field=field_no) from None
        if len(raw) > _MAX_VALUE or not value.isprintable():
            raise EncodeError(f"tag {tag} value too long or not printable", field=field_no)
        out.append(tag.encode("ascii") + f"{len(raw):03d}".encode("ascii") + raw)
    return b"".join(out)


def _unique(items: list[Tlv], field_no: int) -> dict[str, str]:
    found: dict[str, str] = {}
    for tag, value in items:
        if tag in found:
            raise DecodeError(f"tag {tag} repeated", field=field_no)
        found[tag] = value
    return found


def check_location(value: str) -> str:
    """``+121.4737/+31.2304`` (longitude/latitude in range) or a base-station id."""
    geo = _GEO.match(value)
    if geo:
        longitude, latitude = Decimal(geo.group(1)), Decimal(geo.group(2))
        if abs(longitude) > 180 or abs(latitude) > 90:
            raise ValueError("coordinates out of range")
    elif not _CELL.match(value):
        raise ValueError("location is neither +lon/+lat nor a base-station id")
    return value


# (sub-tag, attribute, check) — the identity sub-tags as data.
_IDENTITY_TAGS: Final = (
    ("01", "device_type", lambda v: v in DEVICE_TYPES),
    ("02", "hardware_serial", lambda v: 0 < len(v) <= 50 and v.isascii()),
    ("03", "random_factor", lambda v: 0 < len(v) <= 64 and v.isascii()),
    ("04", "serial_ciphertext", lambda v: 0 < len(v) <= 64 and v.isascii()),
    ("05", "app_version", lambda v: 0 < len(v) <= 8 and v.isascii()),
    ("06", "iccid", lambda v: 18 <= len(v) <= 22 and v.isascii() and v.isalnum()),
    ("07", "location", lambda v: _is_location(v)),
)
_IDENTITY_BY_TAG: Final = {tag: (attr, check) for tag, attr, check in _IDENTITY_TAGS}


def _is_location(value: str) -> bool:
    try:
        check_location(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class TerminalIdentity:
    """F59 tag A2; a version report (A2/05) is an identity with ``app_version`` only."""

    device_type: str | None = None
    hardware_serial: str | None = None
    random_factor: str | None = None
    serial_ciphertext: str | None = None
    app_version: str | None = None
    iccid: str | None = None
    location: str | None = None
    extra: tuple[Tlv, ...] = ()  # unknown sub-tags, sorted
    other_tags: tuple[Tlv, ...] = field(default=())  # F59 top-level tags besides A2

    @classmethod
    def parse(cls, f59: str) -> TerminalIdentity:
        if not f59.isascii():
            raise DecodeError("F59 must be ASCII", field=59)
        items = read_tlvs(f59.encode("ascii"), field_no=59, tag_len=2, encoding="ascii")
        top = _unique(items, 59)
        if IDENTITY_TAG not in top:
            raise DecodeError("no A2 identity tag", field=59)
        body = top.pop(IDENTITY_TAG).encode("ascii")
        before = next(i for i, (tag, _) in enumerate(items) if tag == IDENTITY_TAG)
        base = sum(2 + _LEN_DIGITS + len(v) for _, v in items[:before]) + 2 + _LEN_DIGITS
        sub = _unique(read_tlvs(body, field_no=59, tag_len=2, encoding="ascii", base=base), 59)
        values: dict[str, str] = {}
        extra = []
        for tag, value in sorted(sub.items()):
            known = _IDENTITY_BY_TAG.get(tag)
            if known is None:
                extra.append((tag, value))
            elif not known[1](value):
                raise DecodeError(f"A2/{tag} {known[0]} is malformed", field=59)
            else:
                values[known[0]] = value
        return cls(**values, extra=tuple(extra), other_tags=tuple(sorted(top.items())))

    def render(self) -> str:
        items: list[Tlv] = list(self.extra)
        for tag, attr, check in _IDENTITY_TAGS:
            value = getattr(self, attr)
            if value is None:
                continue
            if not check(value):
                raise EncodeError(f"A2/{tag} {attr} is malformed", field=59)
            items.append((tag, value))
        if len({tag for tag, _ in items}) != len(items):
            raise EncodeError("extra repeats a known sub-tag", field=59)
        body = write_tlvs(sorted(items), field_no=59, tag_len=2, encoding="ascii").decode("ascii")
        top = sorted([*self.other_tags, (IDENTITY_TAG, body)])
        if len({tag for tag, _ in top}) != len(top):
            raise EncodeError("other_tags repeats a tag", field=59)
        return write_tlvs(top, field_no=59, tag_len=2, encoding="ascii").decode("ascii")


_STATUS_TAGS: Final = (
    ("01", "param_version"),
    ("02", "capk_version"),
    ("03", "aid_version"),
    ("04", "app_version"),
    ("05", "tamper"),
    ("06", "install_result"),
)


@dataclass(frozen=True, slots=True)
class TerminalStatus:
    """0820 ``362`` F62: what the terminal holds; ``install_result`` is ``OK`` or
    ``验证签名失败:<reason>`` after a refused package."""

    param_version: str | None = None
    capk_version: str | None = None
    aid_version: str | None = None
    app_version: str | None = None
    tamper: str | None = None
    install_result: str | None = None
    extra: tuple[Tlv, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> TerminalStatus:
        found = _unique(read_tlvs(data, field_no=62, tag_len=2, encoding="gbk"), 62)
        by_tag = dict(_STATUS_TAGS)
        values = {by_tag[t]: v for t, v in found.items() if t in by_tag}
        extra = tuple(sorted((t, v) for t, v in found.items() if t not in by_tag))
        return cls(**values, extra=extra)

    def render(self) -> bytes:
        items = [(t, getattr(self, a)) for t, a in _STATUS_TAGS if getattr(self, a) is not None]
        if {t for t, _ in self.extra} & {t for t, _ in items}:
            raise EncodeError("extra repeats a known tag", field=62)
        return write_tlvs(sorted([*items, *self.extra]), field_no=62, tag_len=2, encoding="gbk")


__all__ = [
    "DEVICE_TYPES",
    "TerminalIdentity",
    "TerminalStatus",
    "check_location",
    "read_tlvs",
    "write_tlvs",
]
