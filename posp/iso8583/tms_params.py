"""F62 of the parameter download (terminal-link.md §10): a run of 2-digit ASCII
keys, each followed by its fixed-length value (GBK text space-padded, or digits).

Invariants:
* ``TerminalParameters.parse`` raises only ``DecodeError`` (field 62, offset =
  byte position of the offending key or value), never quoting a value.
* ``render`` writes keys in ascending order and raises ``EncodeError`` for a
  value that does not fit; ``parse(p.render()) == p`` for every renderable
  ``p`` and ``render(parse(b)) == b`` for every ``b`` whose keys ascend.
* A key the table does not know cannot be skipped (its length is unknown), so
  it is an error, not silently dropped.
* Key ``90`` (parameter-set version, n8) is a project extension: §10 has the
  terminal report its parameter version in 362 but no key to learn it from.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Final

from posp.errors import DecodeError, EncodeError

_FIELD: Final = 62
_KEY_BYTES: Final = 2
#: F62 of the terminal link holds at most 512 bytes; longer sets go out in 364 continuations.
F62_MAX_BYTES: Final = 512


class Kind(enum.Enum):
    TEXT = "text"  # GBK, space-padded on the right
    DIGITS = "digits"  # fixed count of ASCII digits, kept as text (batch)
    AMOUNT = "amount"  # n12 minor units
    FLAG_LIMIT = "flag+limit"  # n1 flag then n12 limit


@dataclass(frozen=True, slots=True)
class ParamKey:
    key: str
    attr: str
    kind: Kind
    size_bytes: int


#: One row per key of §10 (plus the ``90`` extension), in wire order.
PARAM_KEYS: Final[tuple[ParamKey, ...]] = (
    ParamKey("17", "hotline", Kind.TEXT, 20),
    ParamKey("22", "merchant_name", Kind.TEXT, 40),
    ParamKey("26", "txn_mask", Kind.TEXT, 16),
    ParamKey("28", "merchant_id", Kind.TEXT, 15),
    ParamKey("29", "terminal_id", Kind.TEXT, 8),
    ParamKey("31", "batch", Kind.DIGITS, 6),
    ParamKey("37", "purchase_cap_minor", Kind.AMOUNT, 12),
    ParamKey("38", "refund_cap_minor", Kind.AMOUNT, 12),
    ParamKey("39", "transfer_cap_minor", Kind.AMOUNT, 12),
    ParamKey("40", "small_amount", Kind.FLAG_LIMIT, 13),
    ParamKey("90", "version", Kind.AMOUNT, 8),
)
_BY_KEY: Final = {row.key: row for row in PARAM_KEYS}


@dataclass(frozen=True, slots=True)
class SmallAmount:
    """Key 40: small amounts go without PIN and signature when ``enabled``."""

    enabled: bool
    limit_minor: int


Value = str | int | SmallAmount


@dataclass(frozen=True, slots=True)
class TerminalParameters:
    """The parameters one F62 carries; ``None`` = key absent."""

    hotline: str | None = None
    merchant_name: str | None = None
    txn_mask: str | None = None
    merchant_id: str | None = None
    terminal_id: str | None = None
    batch: str | None = None
    purchase_cap_minor: int | None = None
    refund_cap_minor: int | None = None
    transfer_cap_minor: int | None = None
    small_amount: SmallAmount | None = None
    version: int | None = None

    @classmethod
    def parse(cls, data: bytes) -> TerminalParameters:
        values: dict[str, Value] = {}
        offset = 0
        while offset < len(data):
            key_bytes = data[offset : offset + _KEY_BYTES]
            row = _BY_KEY.get(key_bytes.decode("ascii", "replace"))
            if len(key_bytes) < _KEY_BYTES or row is None:
                raise DecodeError("unknown parameter key", field=_FIELD, offset=offset)
            if row.attr in values:
                raise DecodeError(f"key {row.key} repeated", field=_FIELD, offset=offset)
            start = offset + _KEY_BYTES
            raw = data[start : start + row.size_bytes]
            if len(raw) < row.size_bytes:
                raise DecodeError(f"key {row.key} value truncated", field=_FIELD, offset=start)
            values[row.attr] = _decode_value(row, raw, start)
            offset = start + row.size_bytes
        return cls(**values)  # type: ignore[arg-type]

    def render_entries(self) -> list[bytes]:
        """One ``key + value`` per present key, in wire order."""
        entries = []
        for row in PARAM_KEYS:
            value = getattr(self, row.attr)
            if value is not None:
                entries.append(row.key.encode("ascii") + _encode_value(row, value))
        return entries

    def render(self) -> bytes:
        return b"".join(self.render_entries())

    def merged(self, override: TerminalParameters) -> TerminalParameters:
        """These values with every value ``override`` sets replacing them."""
        changes = {
            f.name: getattr(override, f.name)
            for f in fields(self)
            if getattr(override, f.name) is not None
        }
        return TerminalParameters(
            **{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes}
        )


def split_f62(params: TerminalParameters, max_bytes: int = F62_MAX_BYTES) -> list[bytes]:
    """The F62 of each message of a 360/364 dialogue: entries never split across two."""
    chunks: list[bytes] = []
    current = b""
    for entry in params.render_entries():
        if current and len(current) + len(entry) > max_bytes:
            chunks.append(current)
            current = b""
        current += entry
    return [*chunks, current] if current or not chunks else chunks


def _decode_value(row: ParamKey, raw: bytes, offset: int) -> Value:
    if row.kind is Kind.TEXT:
        try:
            text = raw.decode("gbk")
        except UnicodeDecodeError:
            raise DecodeError(
                f"key {row.key} is not GBK text", field=_FIELD, offset=offset
            ) from None
        if not text.isprintable():
            raise DecodeError(f"key {row.key} has control characters", field=_FIELD, offset=offset)
        return text.rstrip(" ")
    if not (raw.isdigit() and raw.isascii()):
        raise DecodeError(f"key {row.key} must be digits", field=_FIELD, offset=offset)
    digits = raw.decode("ascii")
    if row.kind is Kind.DIGITS:
        return digits
    if row.kind is Kind.FLAG_LIMIT:
        if digits[0] not in "01":
            raise DecodeError(f"key {row.key} flag must be 0 or 1", field=_FIELD, offset=offset)
        return SmallAmount(digits[0] == "1", int(digits[1:]))
    return int(digits)


def _encode_value(row: ParamKey, value: Value) -> bytes:
    if row.kind is Kind.TEXT:
        return _encode_text(row, value)
    if row.kind is Kind.DIGITS:
        if not (isinstance(value, str) and len(value) == row.size_bytes and value.isdigit()):
            raise EncodeError(f"key {row.key} must be {row.size_bytes} digits", field=_FIELD)
        return value.encode("ascii")
    if row.kind is Kind.FLAG_LIMIT:
        if not isinstance(value, SmallAmount):
            raise EncodeError(f"key {row.key} must be a SmallAmount", field=_FIELD)
        flag = "1" if value.enabled else "0"
        return flag.encode("ascii") + _amount(row, value.limit_minor, row.size_bytes - 1)
    if not isinstance(value, int) or isinstance(value, bool):
        raise EncodeError(f"key {row.key} must be an integer", field=_FIELD)
    return _amount(row, value, row.size_bytes)


def _encode_text(row: ParamKey, value: Value) -> bytes:
    if not isinstance(value, str) or not value.isprintable() or value != value.rstrip(" "):
        raise EncodeError(
            f"key {row.key} must be printable text without trailing spaces", field=_FIELD
        )
    try:
        raw = value.encode("gbk")
    except UnicodeEncodeError:
        raise EncodeError(f"key {row.key} is not representable in GBK", field=_FIELD) from None
    if len(raw) > row.size_bytes:
        raise EncodeError(f"key {row.key} longer than {row.size_bytes} bytes", field=_FIELD)
    return raw.ljust(row.size_bytes, b" ")


def _amount(row: ParamKey, value: int, digits: int) -> bytes:
    if not 0 <= value < 10**digits:
        raise EncodeError(f"key {row.key} out of range for n{digits}", field=_FIELD)
    return f"{value:0{digits}d}".encode("ascii")
