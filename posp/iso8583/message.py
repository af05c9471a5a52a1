"""The ISO 8583 message value object and its masked rendering.

Invariants:

* ``Message.fields`` maps field numbers to ``str`` (n / an / ans / z fields)
  or ``bytes`` (b fields); the MTI is kept apart from the fields.
* ``repr`` / ``str`` never show a full PAN (masked 6+4), track data, PIN
  blocks, IC data, key blocks or MACs: each field is rendered through the
  masking rule its dialect declares (``posp.iso8583.spec.Mask``).  A message
  rendered without a dialect uses the union of both dialects' rules, which is
  the stricter choice for every field number.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Final

FieldValue = str | bytes


class Mask(Enum):
    """How a field's value may appear in a repr or a log line."""

    CLEAR = "clear"  # shown as is
    PAN = "pan"  # first 6 and last 4 digits shown
    HIDE = "hide"  # only the length is shown


def mask_pan(pan: str) -> str:
    """Mask a PAN to its first 6 and last 4 digits: ``622588******0001``.

    A value shorter than 13 characters keeps only its last 4 (a 6+4 mask would
    reveal nearly all of it)."""
    if len(pan) >= 13:
        return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    return "*" * max(len(pan) - 4, 0) + pan[-4:]


def render_value(value: FieldValue, mask: Mask) -> str:
    """One field's value as it may be shown to a human."""
    if mask is Mask.HIDE:
        unit = "bytes" if isinstance(value, bytes) else "chars"
        return f"<{len(value)} {unit}>"
    if isinstance(value, bytes):
        return value.hex().upper()
    if mask is Mask.PAN:
        return repr(mask_pan(value))
    return repr(value)


# The strictest rule either dialect declares for a field number; filled by
# posp.iso8583.dialects when the dialect tables are built.
DEFAULT_MASKS: Final[dict[int, Mask]] = {}


def render_fields(fields: Mapping[int, FieldValue], masks: Mapping[int, Mask]) -> str:
    """``{2: '622588******0001', 35: <37 chars>, ...}`` in field order."""
    parts = [f"{n}: {render_value(fields[n], masks.get(n, Mask.HIDE))}" for n in sorted(fields)]
    return "{" + ", ".join(parts) + "}"


class Message:
    """An MTI plus its fields.  Compared by value; rendered masked."""

    __slots__ = ("fields", "mti")

    def __init__(self, mti: str, fields: dict[int, FieldValue] | None = None) -> None:
        self.mti = mti
        self.fields: dict[int, FieldValue] = {} if fields is None else fields

    def __getitem__(self, n: int) -> FieldValue:
        return self.fields[n]

    def __setitem__(self, n: int, value: FieldValue) -> None:
        self.fields[n] = value

    def __delitem__(self, n: int) -> None:
        del self.fields[n]

    def __contains__(self, n: object) -> bool:
        return n in self.fields

    def get(self, n: int, default: FieldValue | None = None) -> FieldValue | None:
        return self.fields.get(n, default)

    def pop(self, n: int, default: FieldValue | None = None) -> FieldValue | None:
        return self.fields.pop(n, default)

    def text(self, n: int) -> str:
        """Field ``n`` as str; KeyError if absent, TypeError if it is binary."""
        value = self.fields[n]
        if not isinstance(value, str):
            raise TypeError(f"field {n} is binary")
        return value

    def copy(self) -> Message:
        return Message(self.mti, dict(self.fields))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.mti == other.mti and self.fields == other.fields

    __hash__ = None  # type: ignore[assignment]  # mutable value object

    def __repr__(self) -> str:
        return f"Message({self.mti!r}, {render_fields(self.fields, DEFAULT_MASKS)})"

    def __str__(self) -> str:
        return self.__repr__()
