"""Variant-LMK key handling (hsm-reference.md §2-3): key type codes, scheme tags,
key fields, and encryption of keys under the LMK or under a ZMK/TMK.

Invariants:
* A key type code is a variant digit 0-9 + an LMK pair index 00-0E; the
  type variant is XORed into the first byte of the left LMK half.
* Scheme ``U``/``T`` encrypt part *i* with the first byte of the right half of
  the key-encrypting key XORed with the scheme variant *i*; ``X``/``Y`` are
  plain ECB per 8-byte part; ``Z`` (bare 16H on the wire) is single length.
* Exports under a ZMK/TMK use the same scheme rules with no type variant.
"""

from __future__ import annotations

from dataclasses import dataclass

from hsm_sim.fields import HEX_BYTES as _HEX_BYTES
from hsm_sim.fields import HsmFault, Reader
from posp.crypto.des import tdes_decrypt_ecb, tdes_encrypt_ecb

#: Type variants 0-9 (index 0 = none).
TYPE_VARIANTS = (0x00, 0xA6, 0x5A, 0x6A, 0xDE, 0x2B, 0x50, 0x74, 0x9C, 0xFA)
#: Scheme variants per key part.
SCHEME_VARIANTS: dict[str, tuple[int, ...]] = {"U": (0xA6, 0x5A), "T": (0x6A, 0xDE, 0x2B)}
#: Clear key length in bytes per scheme tag ("Z" = bare single-length).
SCHEME_KEY_BYTES = {"Z": 8, "U": 16, "X": 16, "T": 24, "Y": 24}
#: Field length in hex characters after the tag.
_TAGGED_HEX = {"U": 32, "X": 32, "T": 48, "Y": 48}
#: Scheme for a key of a given length when the request does not say.
DEFAULT_EXPORT_SCHEME = {8: "Z", 16: "X", 24: "Y"}

# Key type index (last two hex digits of the type code) -> LMK pair number 0..19.
_PAIR_OF_INDEX = {
    0x00: 2, 0x01: 3, 0x02: 7, 0x03: 8, 0x04: 9, 0x05: 10, 0x06: 11, 0x07: 12,
    0x08: 13, 0x09: 14, 0x0A: 15, 0x0B: 16, 0x0C: 17, 0x0D: 18, 0x0E: 19,
}  # fmt: skip

PAIR_LMK_PIN = 1  # LMK 02-03: PINs for host storage


@dataclass(frozen=True, slots=True)
class KeyType:
    """A parsed key type code: LMK pair number and type variant."""

    code: str
    pair: int
    variant: int


def _build_key_types() -> dict[str, KeyType]:
    table: dict[str, KeyType] = {}
    for variant in range(10):
        for index, pair in _PAIR_OF_INDEX.items():
            code = f"{variant}{index:02X}"
            table[code] = KeyType(code, pair, variant)
    return table


KEY_TYPES: dict[str, KeyType] = _build_key_types()

ZMK = KEY_TYPES["000"]
ZPK = KEY_TYPES["001"]
TMK = KEY_TYPES["002"]
TPK = TMK
PVK = TMK
TAK = KEY_TYPES["003"]
ZAK = KEY_TYPES["008"]
ZEK = KEY_TYPES["00A"]
TDK = KEY_TYPES["00B"]


def key_type(code: str, fault: str = "04") -> KeyType:
    """Look up a 3H key type code; fault ``04`` (or the given code) when unknown."""
    found = KEY_TYPES.get(code.upper())
    if found is None:
        raise HsmFault(fault)
    return found


def scheme_for(tag: str, key_bytes: int | None = None) -> str:
    """Validate a 1A scheme selector (fault 26); optionally that it fits the key length."""
    if tag not in SCHEME_KEY_BYTES:
        raise HsmFault("26")
    if key_bytes is not None and SCHEME_KEY_BYTES[tag] != key_bytes:
        raise HsmFault("26")
    return tag


@dataclass(frozen=True, slots=True)
class KeyField:
    """A key as it appears in a request: scheme tag (``Z`` for bare 16H) and hex."""

    tag: str
    hex: str

    def wire(self) -> str:
        return self.hex if self.tag == "Z" else self.tag + self.hex


def read_key(reader: Reader) -> KeyField:
    """Read a K field: U/X + 32H, T/Y + 48H, else bare 16H (fault 15 when short)."""
    return key_field_of_wire(read_key_wire(reader))


def read_pvk_pair(reader: Reader) -> KeyField:
    """Read a PVK pair: ``U``/``X`` + 32H, or a bare 32H (two singles, ECB per half)."""
    return key_field_of_wire(read_key_wire(reader, bare_hex=32))


# Tag byte (either case) -> length of the whole field on the wire, tag included.
_TAGGED_WIRE_BYTES = {ord(c): 1 + n for tag, n in _TAGGED_HEX.items() for c in (tag, tag.lower())}


def read_key_wire(reader: Reader, bare_hex: int = 16) -> bytes:
    """The raw bytes of a K field, checked as ``read_key`` checks them (fault 15).

    ``bare_hex`` is the length of an untagged field: 16 (a single key), or 32
    for a PVK pair (``read_pvk_pair``).  The bytes are the key's cache slot in
    :class:`hsm_sim.context.HsmContext`; :func:`key_field_of_wire` parses them.
    """
    data = reader.data
    start = reader.pos
    if start >= reader.end:
        raise HsmFault("15")
    size = _TAGGED_WIRE_BYTES.get(data[start])
    hex_from = start + 1
    if size is None:
        size = bare_hex
        hex_from = start
    stop = start + size
    if stop > reader.end or not _HEX_BYTES.issuperset(data[hex_from:stop]):
        raise HsmFault("15")
    reader.pos = stop
    return data[start:stop]


def key_field_of_wire(wire: bytes) -> KeyField:
    """The KeyField of bytes ``read_key_wire`` accepted (bare 32H = a PVK pair, ``X``)."""
    text = wire.decode("ascii").upper()
    if len(text) == 16:
        return KeyField("Z", text)
    if len(text) == 32:
        return KeyField("X", text)
    return KeyField(text[0], text[1:])


def lmk_variant_key(pair: bytes, type_variant: int, scheme_variant: int) -> bytes:
    """The 16-byte 3DES key for a type variant and a scheme variant of an LMK pair."""
    out = bytearray(pair)
    out[0] ^= TYPE_VARIANTS[type_variant]
    out[8] ^= scheme_variant
    return bytes(out)


def _parts(tag: str, key_bytes: int) -> tuple[int, ...]:
    """Scheme variant per 8-byte part (0 = plain ECB under the KEK)."""
    variants = SCHEME_VARIANTS.get(tag)
    if variants is not None:
        return variants
    return (0,) * (key_bytes // 8)


def encrypt_key(kek_for: KekSource, clear: bytes, tag: str) -> str:
    """Encrypt a clear key under a KEK with scheme ``tag``; return the wire field."""
    if tag == "Z":
        return tdes_encrypt_ecb(kek_for(0), clear).hex().upper()
    parts = _parts(tag, len(clear))
    out = b"".join(
        tdes_encrypt_ecb(kek_for(variant), clear[8 * i : 8 * i + 8])
        for i, variant in enumerate(parts)
    )
    return tag + out.hex().upper()


def decrypt_key(kek_for: KekSource, field: KeyField) -> bytes:
    """Decrypt a key field under a KEK (the inverse of ``encrypt_key``)."""
    data = bytes.fromhex(field.hex)
    if field.tag == "Z":
        return tdes_decrypt_ecb(kek_for(0), data)
    parts = _parts(field.tag, len(data))
    return b"".join(
        tdes_decrypt_ecb(kek_for(variant), data[8 * i : 8 * i + 8])
        for i, variant in enumerate(parts)
    )


class KekSource:
    """Gives the key-encrypting key for a scheme variant (0 = none), cached."""

    __slots__ = ("_base", "_cache")

    def __init__(self, base: bytes) -> None:
        self._base = base
        self._cache: dict[int, bytes] = {}

    def __call__(self, scheme_variant: int) -> bytes:
        key = self._cache.get(scheme_variant)
        if key is None:
            if scheme_variant == 0:
                key = self._base
            elif len(self._base) < 16:
                raise HsmFault("26")  # scheme variants need a double-length KEK
            else:
                out = bytearray(self._base)
                out[8] ^= scheme_variant
                key = bytes(out)
            self._cache[scheme_variant] = key
        return key
