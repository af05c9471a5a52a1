"""MAC algorithms: the UnionPay POS "ECB" MAC and ISO 9797-1 algorithms 1 and 3.

Invariants:
* ``pad`` method 1 adds nothing to data that is already a whole number of
  blocks (ISO 9797-1 padding method 1), except that empty data becomes one
  zero block; method 2 always adds 0x80; method 0 refuses partial blocks.
* ISO 9797-1 MACs are returned as the full 8-byte final block; callers keep
  the leftmost 4 bytes where a protocol wants a 32-bit MAC.
"""

from __future__ import annotations

import sys
from functools import reduce
from operator import xor

from posp.crypto.des import BLOCK_BYTES, tdes_decrypt_ecb, tdes_encrypt_cbc, tdes_encrypt_ecb
from posp.errors import CryptoError

PADDING_NONE = 0
PADDING_ZEROS = 1
PADDING_80 = 2


def pad(data: bytes, method: int) -> bytes:
    """ISO 9797-1 padding: 0 none (data must be whole blocks), 1 zeros, 2 0x80 then zeros."""
    if method == PADDING_NONE:
        if len(data) % BLOCK_BYTES or not data:
            raise CryptoError("padding method 0 needs a non-empty multiple of 8 bytes")
        return data
    if method == PADDING_ZEROS:
        if not data:
            return bytes(BLOCK_BYTES)
        return data + bytes(-len(data) % BLOCK_BYTES)
    if method == PADDING_80:
        data = data + b"\x80"
        return data + bytes(-len(data) % BLOCK_BYTES)
    raise CryptoError(f"unknown padding method {method}")


def cup_ecb_mac(mak: bytes, mab: bytes) -> bytes:
    """UnionPay POS ECB MAC (terminal-link.md §5): 8 upper-case hex ASCII characters."""
    padded = mab + bytes(-len(mab) % BLOCK_BYTES)
    # XOR is byte-order agnostic, so folding native 64-bit words and writing the result
    # back in native order gives the block XOR without a Python loop per block.
    acc = reduce(xor, memoryview(padded).cast("Q"), 0).to_bytes(BLOCK_BYTES, sys.byteorder)
    hex_r = acc.hex().upper().encode("ascii")
    t = int.from_bytes(tdes_encrypt_ecb(mak, hex_r[:8]), "big")
    t_prime = (t ^ int.from_bytes(hex_r[8:], "big")).to_bytes(8, "big")
    e = tdes_encrypt_ecb(mak, t_prime)
    return e.hex().upper()[:8].encode("ascii")


def iso9797_alg1(key: bytes, data: bytes, padding: int = PADDING_ZEROS) -> bytes:
    """ISO 9797-1 MAC algorithm 1 (CBC-MAC); single DES for an 8-byte key, else 3DES."""
    return tdes_encrypt_cbc(key, pad(data, padding))[-BLOCK_BYTES:]


def iso9797_alg3(key: bytes, data: bytes, padding: int = PADDING_ZEROS) -> bytes:
    """ISO 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC) with a 16-byte key."""
    if len(key) != 16:
        raise CryptoError("ISO 9797-1 algorithm 3 needs a 16-byte key")
    left, right = key[:8], key[8:]
    last = tdes_encrypt_cbc(left, pad(data, padding))[-BLOCK_BYTES:]
    return tdes_encrypt_ecb(left, tdes_decrypt_ecb(right, last))
