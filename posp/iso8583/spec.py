"""Field specifications as data, compiled once into per-field codec closures.

A dialect is a table of frozen ``FieldSpec`` rows.  ``compile_field`` turns a
row into an ``(encoder, decoder)`` pair of closures specialised for its
format, so the hot path does no per-field dispatch on the spec, allocates no
per-field objects and uses no regexes.

Invariants:

* Lengths count digits for n / z fields and bytes (characters) for an / ans /
  b fields, whatever the wire encoding.
* An encoder takes the field's Python value (``str`` or ``bytes``) and returns
  its wire bytes including the length prefix, or raises ``InvalidField``.
* A decoder takes ``(buffer, offset)`` and returns ``(value, next offset)``,
  or raises ``InvalidField`` / ``IndexError`` on malformed input.  The reason
  it gives never quotes the value.
* BCD odd-length values take one pad nibble: ``0`` is sent, any nibble is
  accepted on receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from posp.iso8583.message import FieldValue, Mask

Encoder = Callable[[FieldValue], bytes]
Decoder = Callable[[bytes, int], tuple[FieldValue, int]]


class InvalidField(ValueError):
    """Raised by compiled codecs; the dialect loop adds field number and offset."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Fmt(Enum):
    """ISO 8583 data format of a field."""

    N = "n"  # digits
    AN = "an"  # ASCII text
    ANS = "ans"  # ASCII text incl. specials
    B = "b"  # binary
    Z = "z"  # track digits; '=' is the separator


class Wire(Enum):
    """How data (or a length prefix) is represented on the wire."""

    BCD = "bcd"
    ASCII = "ascii"
    BINARY = "binary"


class Align(Enum):
    """Side a BCD value sits on when its digit count is odd."""

    LEFT = "left"  # pad nibble on the right
    RIGHT = "right"  # pad nibble on the left


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a dialect.  ``length`` is the fixed length or the maximum;
    ``prefix_digits`` is 0 (fixed), 2 (LL) or 3 (LLL)."""

    number: int
    name: str
    fmt: Fmt
    length: int
    prefix_digits: int = 0
    data: Wire = Wire.ASCII
    prefix: Wire = Wire.ASCII
    align: Align = Align.RIGHT
    mask: Mask = Mask.CLEAR

    @property
    def variable(self) -> bool:
        return self.prefix_digits != 0


# --- length prefixes ---------------------------------------------------------

# Byte value -> its two BCD digits as an int, or -1 when a nibble is above 9.
_BCD_BYTE: Final[tuple[int, ...]] = tuple(
    (b >> 4) * 10 + (b & 15) if (b >> 4) < 10 and (b & 15) < 10 else -1 for b in range(256)
)
_BCD_LL: Final[tuple[bytes, ...]] = tuple(bytes.fromhex(f"{n:02d}") for n in range(100))
_BCD_LLL: Final[tuple[bytes, ...]] = tuple(bytes.fromhex(f"{n:04d}") for n in range(1000))
_ASCII_LL: Final[tuple[bytes, ...]] = tuple(f"{n:02d}".encode() for n in range(100))
_ASCII_LLL: Final[tuple[bytes, ...]] = tuple(f"{n:03d}".encode() for n in range(1000))

LengthReader = Callable[[bytes, int], tuple[int, int]]


def _read_bcd_ll(buf: bytes, pos: int) -> tuple[int, int]:
    n = _BCD_BYTE[buf[pos]]
    if n < 0:
        raise InvalidField("length prefix is not BCD")
    return n, pos + 1


def _read_bcd_lll(buf: bytes, pos: int) -> tuple[int, int]:
    hi = _BCD_BYTE[buf[pos]]
    lo = _BCD_BYTE[buf[pos + 1]]
    if hi < 0 or lo < 0 or hi > 9:
        raise InvalidField("length prefix is not BCD 0000-0999")
    return hi * 100 + lo, pos + 2


def _ascii_reader(width: int) -> LengthReader:
    def read(buf: bytes, pos: int) -> tuple[int, int]:
        raw = buf[pos : pos + width]
        if len(raw) != width or not raw.isdigit():
            raise InvalidField("length prefix is not ASCII digits")
        return int(raw), pos + width

    return read


def _prefix_table(spec: FieldSpec) -> tuple[bytes, ...]:
    if spec.prefix is Wire.BCD:
        return _BCD_LL if spec.prefix_digits == 2 else _BCD_LLL
    return _ASCII_LL if spec.prefix_digits == 2 else _ASCII_LLL


def _prefix_reader(spec: FieldSpec) -> LengthReader:
    if spec.prefix is Wire.BCD:
        return _read_bcd_ll if spec.prefix_digits == 2 else _read_bcd_lll
    return _ascii_reader(spec.prefix_digits)


# --- value checks --------------------------------------------------------------


def _length_error(spec: FieldSpec, size: int) -> InvalidField:
    if spec.variable:
        return InvalidField(f"length {size} exceeds maximum {spec.length}")
    return InvalidField(f"length {size}, expected {spec.length}")


def _is_digits(value: str) -> bool:
    return value.isdigit() and value.isascii()


_TRACK_CHARS = frozenset("0123456789ABCDEF=")


def _is_track(value: str) -> bool:
    # Encrypted track data (terminal-link §6, F53 digit 3 = 1) carries any hex
    # nibble; '=' and 'D' are the same nibble.  Clear-track digit checks are the
    # switch's job once it knows whether the track is encrypted.
    return _TRACK_CHARS.issuperset(value)


# --- encoders ------------------------------------------------------------------


def _text_checker(fmt: Fmt) -> Callable[[str], bool] | None:
    if fmt is Fmt.N:
        return _is_digits
    if fmt is Fmt.Z:
        return _is_track
    return None


def _fixed_bcd_digits_encoder(spec: FieldSpec) -> Encoder:
    """The commonest field shape (n, fixed, BCD) with the fewest steps."""
    size = spec.length
    pad_left = "0" if size & 1 and spec.align is Align.RIGHT else ""
    pad_right = "0" if size & 1 and spec.align is Align.LEFT else ""

    def encode(value: FieldValue) -> bytes:
        if type(value) is not str:
            raise InvalidField("expected str")
        if len(value) != size:
            raise _length_error(spec, len(value))
        if not (value.isdigit() and value.isascii()):
            raise InvalidField("not n characters")
        return bytes.fromhex(pad_left + value + pad_right)

    return encode


def _bcd_encoder(spec: FieldSpec) -> Encoder:
    if spec.fmt is Fmt.N and not spec.variable:
        return _fixed_bcd_digits_encoder(spec)
    prefixes = _prefix_table(spec) if spec.variable else None
    variable, maximum = spec.variable, spec.length
    check = _text_checker(spec.fmt)
    left = spec.align is Align.LEFT
    track = spec.fmt is Fmt.Z

    def encode(value: FieldValue) -> bytes:
        if type(value) is not str:
            raise InvalidField("expected str")
        size = len(value)
        if size > maximum if variable else size != maximum:
            raise _length_error(spec, size)
        if size and check is not None and not check(value):
            raise InvalidField(f"not {spec.fmt.value} characters")
        digits = value.replace("=", "D") if track else value
        if size & 1:
            digits = digits + "0" if left else "0" + digits
        data = bytes.fromhex(digits)
        return data if prefixes is None else prefixes[size] + data

    return encode


def _ascii_encoder(spec: FieldSpec) -> Encoder:
    prefixes = _prefix_table(spec) if spec.variable else None
    variable, maximum = spec.variable, spec.length
    check = _text_checker(spec.fmt)

    def encode(value: FieldValue) -> bytes:
        if type(value) is not str:
            raise InvalidField("expected str")
        if not value.isascii():
            raise InvalidField("not ASCII")
        size = len(value)
        if size > maximum if variable else size != maximum:
            raise _length_error(spec, size)
        if size and check is not None and not check(value):
            raise InvalidField(f"not {spec.fmt.value} characters")
        data = value.encode("ascii")
        return data if prefixes is None else prefixes[size] + data

    return encode


def _binary_encoder(spec: FieldSpec) -> Encoder:
    prefixes = _prefix_table(spec) if spec.variable else None
    variable, maximum = spec.variable, spec.length

    def encode(value: FieldValue) -> bytes:
        if type(value) is not bytes:
            raise InvalidField("expected bytes")
        size = len(value)
        if size > maximum if variable else size != maximum:
            raise _length_error(spec, size)
        return value if prefixes is None else prefixes[len(value)] + value

    return encode


# --- decoders ------------------------------------------------------------------


def _too_long(size: int, maximum: int) -> InvalidField:
    return InvalidField(f"length {size} exceeds maximum {maximum}")


def _fixed_bcd_digits_decoder(spec: FieldSpec) -> Decoder:
    """The commonest field shape (n, fixed, BCD) without a length reader call."""
    size = spec.length
    nbytes = (size + 1) // 2
    odd = size & 1
    left = spec.align is Align.LEFT

    def decode(buf: bytes, pos: int) -> tuple[FieldValue, int]:
        end = pos + nbytes
        if end > len(buf):
            raise InvalidField("truncated")
        digits = buf[pos:end].hex()
        if odd:
            digits = digits[:-1] if left else digits[1:]
        if not digits.isdigit():
            raise InvalidField("not BCD digits")
        return digits, end

    return decode


def _bcd_decoder(spec: FieldSpec) -> Decoder:
    if spec.fmt is Fmt.N and not spec.variable:
        return _fixed_bcd_digits_decoder(spec)
    read_prefix = _prefix_reader(spec) if spec.variable else None
    maximum = spec.length
    left = spec.align is Align.LEFT
    track = spec.fmt is Fmt.Z

    def decode(buf: bytes, pos: int) -> tuple[FieldValue, int]:
        if read_prefix is None:
            size = maximum
        else:
            size, pos = read_prefix(buf, pos)
            if size > maximum:
                raise _too_long(size, maximum)
        end = pos + (size + 1) // 2
        if end > len(buf):
            raise InvalidField("truncated")
        digits = buf[pos:end].hex()
        if size & 1:
            digits = digits[:-1] if left else digits[1:]
        if track:
            digits = digits.replace("d", "=").upper()
        elif size and not digits.isdigit():
            raise InvalidField("not BCD digits")
        return digits, end

    return decode


def _ascii_decoder(spec: FieldSpec) -> Decoder:
    read_prefix = _prefix_reader(spec) if spec.variable else None
    maximum = spec.length
    digits, track = spec.fmt is Fmt.N, spec.fmt is Fmt.Z

    def decode(buf: bytes, pos: int) -> tuple[FieldValue, int]:
        if read_prefix is None:
            size = maximum
        else:
            size, pos = read_prefix(buf, pos)
            if size > maximum:
                raise _too_long(size, maximum)
        end = pos + size
        if end > len(buf):
            raise InvalidField("truncated")
        text = buf[pos:end].decode("ascii")
        checked = text if digits else text.replace("=", "") if track else "0"
        if size and not checked.isdigit():
            raise InvalidField(f"not {spec.fmt.value} characters")
        return text, end

    return decode


def _binary_decoder(spec: FieldSpec) -> Decoder:
    read_prefix = _prefix_reader(spec) if spec.variable else None
    maximum = spec.length

    def decode(buf: bytes, pos: int) -> tuple[FieldValue, int]:
        if read_prefix is None:
            size = maximum
        else:
            size, pos = read_prefix(buf, pos)
            if size > maximum:
                raise _too_long(size, maximum)
        end = pos + size
        if end > len(buf):
            raise InvalidField("truncated")
        return buf[pos:end], end

    return decode


def compile_field(spec: FieldSpec) -> tuple[Encoder, Decoder]:
    """The (encoder, decoder) closures for one field specification."""
    if spec.data is Wire.BCD:
        if spec.fmt not in (Fmt.N, Fmt.Z):
            raise ValueError(f"field {spec.number}: BCD data needs format n or z")
        return _bcd_encoder(spec), _bcd_decoder(spec)
    if spec.data is Wire.BINARY:
        return _binary_encoder(spec), _binary_decoder(spec)
    return _ascii_encoder(spec), _ascii_decoder(spec)
