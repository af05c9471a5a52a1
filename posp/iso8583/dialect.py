"""A dialect: a table of field specs compiled into bitmap-driven codec loops.

Invariants:

* ``encode_fields`` writes the bitmap (8 bytes, or 16 with bit 1 always set
  when the dialect has a secondary bitmap) and the fields in ascending order.
* ``decode_fields`` raises only ``DecodeError``, naming the field and the
  offset where the field starts; it fills the caller's dict as it goes, so a
  caller can still see the fields decoded before the failure.
* Field 1 is never a data field: it is the secondary bitmap indicator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from posp.errors import DecodeError, EncodeError
from posp.iso8583.message import DEFAULT_MASKS, FieldValue, Mask
from posp.iso8583.spec import Decoder, Encoder, FieldSpec, InvalidField, compile_field

_STRICTNESS: Final = {Mask.CLEAR: 0, Mask.PAN: 1, Mask.HIDE: 2}

DecoderRow = tuple[tuple[int, Decoder | None], ...]


class Dialect:
    """A compiled field table.  Build once at import time, share freely."""

    __slots__ = (
        "_decoder_rows",
        "_encoders",
        "bitmap_bytes",
        "masks",
        "name",
        "specs",
    )

    def __init__(self, name: str, specs: Iterable[FieldSpec], *, secondary_bitmap: bool) -> None:
        table = {spec.number: spec for spec in specs}
        top = 128 if secondary_bitmap else 64
        if any(not 2 <= n <= top for n in table):
            raise ValueError(f"{name}: field numbers must be within 2..{top}")
        self.name = name
        self.specs: Mapping[int, FieldSpec] = MappingProxyType(table)
        self.bitmap_bytes = top // 8
        self.masks: Mapping[int, Mask] = MappingProxyType({n: s.mask for n, s in table.items()})
        compiled = {n: compile_field(spec) for n, spec in table.items()}
        self._encoders: dict[int, Encoder] = {n: pair[0] for n, pair in compiled.items()}
        decoders = {n: pair[1] for n, pair in compiled.items()}
        self._decoder_rows = tuple(
            tuple(_decoder_row(byte_index, value, decoders) for value in range(256))
            for byte_index in range(self.bitmap_bytes)
        )
        for n, mask in self.masks.items():
            if n not in DEFAULT_MASKS or _STRICTNESS[mask] > _STRICTNESS[DEFAULT_MASKS[n]]:
                DEFAULT_MASKS[n] = mask

    def encode_fields(self, fields: Mapping[int, FieldValue]) -> bytes:
        """Bitmap followed by the encoded fields; EncodeError names the field."""
        parts = [b""]
        bitmap = 0
        top = self.bitmap_bytes * 8
        encoders = self._encoders
        append = parts.append
        for n, value in sorted(fields.items()):
            encode = encoders.get(n)
            if encode is None:
                raise EncodeError(f"not defined in the {self.name} dialect", field=n)
            try:
                append(encode(value))
            except InvalidField as exc:
                raise EncodeError(exc.reason, field=n) from None
            bitmap |= 1 << (top - n)
        if top == 128:
            bitmap |= 1 << 127
        parts[0] = bitmap.to_bytes(self.bitmap_bytes, "big")
        return b"".join(parts)

    def join_encoded(self, texts: Mapping[int, bytes]) -> bytes:
        """Bitmap followed by fields already encoded by :meth:`encode_field` (what
        :meth:`encode_fields` gives for the same values)."""
        bitmap = 0
        top = self.bitmap_bytes * 8
        for n in texts:
            bitmap |= 1 << (top - n)
        if top == 128:
            bitmap |= 1 << 127
        head = bitmap.to_bytes(self.bitmap_bytes, "big")
        return head + b"".join([texts[n] for n in sorted(texts)])

    def encode_field(self, n: int, value: FieldValue) -> bytes:
        """One field's wire bytes, length prefix included; EncodeError names it."""
        encode = self._encoders.get(n)
        if encode is None:
            raise EncodeError(f"not defined in the {self.name} dialect", field=n)
        try:
            return encode(value)
        except InvalidField as exc:
            raise EncodeError(exc.reason, field=n) from None

    def decode_fields(self, buf: bytes, pos: int, fields: dict[int, FieldValue]) -> int:
        """Decode bitmap and fields from ``buf[pos:]`` into ``fields``; the end offset."""
        size = self.bitmap_bytes
        bitmap = buf[pos : pos + size]
        if len(bitmap) != size:
            raise DecodeError("truncated bitmap", offset=pos)
        has_secondary = bitmap[0] & 0x80
        if size == 16 and not has_secondary:
            raise DecodeError("bitmap bit 1 must be set", offset=pos)
        if size == 8 and has_secondary:
            raise DecodeError("bitmap bit 1 must not be set", offset=pos)
        pos += size
        rows = self._decoder_rows
        for byte_index, value in enumerate(bitmap):
            for n, decode in rows[byte_index][value]:
                if decode is None:
                    raise DecodeError(
                        f"not defined in the {self.name} dialect", field=n, offset=pos
                    )
                try:
                    fields[n], pos = decode(buf, pos)
                except InvalidField as exc:
                    raise DecodeError(exc.reason, field=n, offset=pos) from None
                except (IndexError, ValueError):
                    # IndexError: a length prefix cut short; ValueError: non-ASCII text.
                    raise DecodeError("truncated or malformed", field=n, offset=pos) from None
        return pos


def _decoder_row(byte_index: int, value: int, decoders: Mapping[int, Decoder]) -> DecoderRow:
    """Field numbers (with their decoders) flagged by one bitmap byte value."""
    row = []
    for bit in range(8):
        n = byte_index * 8 + bit + 1
        if n != 1 and value & (0x80 >> bit):
            row.append((n, decoders.get(n)))
    return tuple(row)
