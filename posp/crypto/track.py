"""Track data encryption under the TDK (terminal-link.md §6).

The track digits are packed two to a byte (an odd count takes one ``0`` pad
nibble at the end), the 8 bytes that end just before the last byte are
3DES-ECB encrypted in place, and the result is unpacked to the same digit
count.  The last byte (and with it any pad nibble) is never encrypted, so the
transformation is length-preserving and exactly reversible.

Invariants: ``=`` is accepted on input and travels as ``D``; output digits are
upper-case hex.  Tracks shorter than 18 digits cannot be encrypted.
"""

from __future__ import annotations

from collections.abc import Callable

from posp.crypto.des import tdes_decrypt_ecb, tdes_encrypt_ecb
from posp.errors import CryptoError

MIN_TRACK_DIGITS = 18
_HEX = frozenset("0123456789ABCDEF")


def _transform(tdk: bytes, digits: str, cipher: Callable[[bytes, bytes], bytes]) -> str:
    nibbles = digits.upper().replace("=", "D")
    if len(nibbles) < MIN_TRACK_DIGITS or not set(nibbles) <= _HEX:
        raise CryptoError("track data must be at least 18 hex digits")
    packed = bytearray.fromhex(nibbles + "0" * (len(nibbles) % 2))
    end = len(packed) - 1
    packed[end - 8 : end] = cipher(tdk, bytes(packed[end - 8 : end]))
    return packed.hex().upper()[: len(nibbles)]


def encrypt_track(tdk: bytes, digits: str) -> str:
    """Encrypt track 2/3 digits (``=`` or ``D`` separator) under the TDK."""
    return _transform(tdk, digits, tdes_encrypt_ecb)


def decrypt_track(tdk: bytes, digits: str) -> str:
    """Decrypt track digits encrypted by ``encrypt_track``; the separator comes back as ``D``."""
    return _transform(tdk, digits, tdes_decrypt_ecb)
