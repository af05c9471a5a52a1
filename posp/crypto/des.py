"""DES / 3DES primitives over ``cryptography``'s TripleDES.

Invariants:
* Every key is expanded to 24 bytes before it reaches ``cryptography``:
  8-byte keys as K K K (single DES), 16-byte keys as K1 K2 K1, so no
  deprecation warning is ever emitted.
* ECB encryptor/decryptor contexts are cached per key in a bounded dict: the
  HSM simulator verifies many thousands of MACs per second under a few
  hundred keys, and building a ``Cipher`` costs more than the encryption
  itself.  ECB contexts carry no chaining state between ``update`` calls on
  whole blocks, which is what makes reusing them sound.  The cache is meant
  for one thread (the simulator's event loop); it is cleared wholesale when
  full rather than kept as an LRU, because a clear is O(1) amortised and a
  working set larger than the bound is not a realistic load.
* A check value of a key without a context (a fresh working key: the HSM
  simulator's A0, a terminal checking F62) is one block through libcrypto's
  DES (``posp.crypto.nativedes``) and leaves no context behind; that path is
  taken only when it loads and agrees with ``cryptography`` at import.
* Nothing here logs or puts key material into exception messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from posp.crypto import nativedes
from posp.errors import CryptoError

BLOCK_BYTES = 8
_CACHE_MAX_KEYS = 4096

# key (as given) -> [cipher, encryptor context or None, decryptor context or None]:
# each context is made on its first use (a fresh key often only ever encrypts
# once, for its check value, and a context costs more than the encryption)
_ecb_contexts: dict[bytes, list[Any]] = {}

# byte -> the same byte with its low bit flipped when its bit count is even
_ODD_PARITY = bytes(b ^ ((bin(b).count("1") + 1) & 1) for b in range(256))


def expand_key(key: bytes) -> bytes:
    """Return the 24-byte TripleDES form of an 8-, 16- or 24-byte key."""
    n = len(key)
    if n == 16:
        return key + key[:8]
    if n == 8:
        return key * 3
    if n == 24:
        return key
    raise CryptoError(f"DES key must be 8, 16 or 24 bytes, not {n}")


_ENCRYPT, _DECRYPT = 1, 2


def _context(key: bytes, which: int) -> Any:
    """``key``'s encryptor (``_ENCRYPT``) or decryptor (``_DECRYPT``), made on first use."""
    ctx = _ecb_contexts.get(key)
    if ctx is None:
        ctx = [Cipher(TripleDES(expand_key(key)), modes.ECB()), None, None]
        if len(_ecb_contexts) >= _CACHE_MAX_KEYS:
            _ecb_contexts.clear()
        _ecb_contexts[key] = ctx
    made = ctx[which]
    if made is None:
        made = ctx[which] = ctx[0].encryptor() if which == _ENCRYPT else ctx[0].decryptor()
    return made


def _check_blocks(data: bytes) -> None:
    if len(data) % BLOCK_BYTES:
        raise CryptoError(f"data length {len(data)} is not a multiple of 8")


def tdes_encrypt_ecb(key: bytes, data: bytes) -> bytes:
    """3DES-ECB encrypt ``data`` (a multiple of 8 bytes) under an 8/16/24-byte key."""
    _check_blocks(data)
    result: bytes = _context(key, _ENCRYPT).update(data)
    return result


def tdes_decrypt_ecb(key: bytes, data: bytes) -> bytes:
    """3DES-ECB decrypt ``data`` (a multiple of 8 bytes) under an 8/16/24-byte key."""
    _check_blocks(data)
    result: bytes = _context(key, _DECRYPT).update(data)
    return result


_ZERO_IV = bytes(BLOCK_BYTES)
# key (as given) -> [CBC encryptor context, its current chaining block].  A CBC
# context carries the last ciphertext block into the next ``update``; XOR-ing that
# block (and the wanted IV) into the first plaintext block cancels it, so one
# context per key serves every call with one C call, instead of a context built
# per call (which costs about as much as CBC over a network MAB).
_cbc_contexts: dict[bytes, list[Any]] = {}


def _cbc_context(key: bytes) -> list[Any]:
    ctx = _cbc_contexts.get(key)
    if ctx is None:
        cipher = Cipher(TripleDES(expand_key(key)), modes.CBC(_ZERO_IV))
        ctx = [cipher.encryptor(), _ZERO_IV]
        if len(_cbc_contexts) >= _CACHE_MAX_KEYS:
            _cbc_contexts.clear()
        _cbc_contexts[key] = ctx
    return ctx


def tdes_encrypt_cbc(key: bytes, data: bytes, iv: bytes = _ZERO_IV) -> bytes:
    """3DES-CBC encrypt (no padding) through the key's cached CBC context.

    Invariant: after every call the cached chaining block equals the context's
    internal IV (the last ciphertext block); calls run to completion without
    yielding, so the one-thread event loop never interleaves two of them.
    """
    _check_blocks(data)
    if len(iv) != BLOCK_BYTES:
        raise CryptoError("CBC IV must be 8 bytes")
    if not data:
        return b""
    ctx = _cbc_context(key)
    mask = int.from_bytes(ctx[1], "big") ^ int.from_bytes(iv, "big")
    first = (int.from_bytes(data[:BLOCK_BYTES], "big") ^ mask).to_bytes(BLOCK_BYTES, "big")
    result: bytes = ctx[0].update(first + data[BLOCK_BYTES:])
    ctx[1] = result[-BLOCK_BYTES:]
    return result


def tdes_decrypt_cbc(key: bytes, data: bytes, iv: bytes = bytes(BLOCK_BYTES)) -> bytes:
    """3DES-CBC decrypt (no padding)."""
    _check_blocks(data)
    plain = tdes_decrypt_ecb(key, data)
    prev = iv + data[:-BLOCK_BYTES]
    return xor_bytes(plain, prev)


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """XOR two byte strings of equal length."""
    if len(a) != len(b):
        raise CryptoError("xor operands differ in length")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def adjust_odd_parity(key: bytes) -> bytes:
    """Set the low bit of every byte so that each byte has odd parity."""
    return key.translate(_ODD_PARITY)


def has_odd_parity(key: bytes) -> bool:
    """True when every byte of ``key`` has an odd number of set bits."""
    return key.translate(_ODD_PARITY) == key


_ZERO_BLOCK = bytes(BLOCK_BYTES)


def _native_once() -> Callable[[bytes, bytes], bytes] | None:
    """libcrypto's one-block 3DES (24-byte key, block) when it loads and gives
    ``cryptography``'s answers for single, double and triple length keys."""
    des = nativedes.load()
    if des is None:
        return None
    try:
        for size in (8, 16, 24):
            key = expand_key(bytes((37 * i + size) % 256 for i in range(size)))
            block = bytes((11 * i + 5) % 256 for i in range(BLOCK_BYTES))
            expected = Cipher(TripleDES(key), modes.ECB()).encryptor().update(block)
            if des.encrypt_once(key, block) != expected:
                return None
    except (OSError, ValueError):
        return None
    return des.encrypt_once


#: One block under a key that has no cipher context, or None (contexts only).
_encrypt_once = _native_once()


def check_value(key: bytes, length: int = 3) -> bytes:
    """Key check value: the first ``length`` bytes of E(key, 0^8).  A key without a
    cached context (mostly a fresh one) goes through libcrypto once instead of
    getting a context it would use for this one block."""
    if _encrypt_once is not None and key not in _ecb_contexts:
        return _encrypt_once(expand_key(key), _ZERO_BLOCK)[:length]
    return tdes_encrypt_ecb(key, _ZERO_BLOCK)[:length]


def generate_key(length: int) -> bytes:
    """A random odd-parity DES key of 8, 16 or 24 bytes."""
    if length not in (8, 16, 24):
        raise CryptoError(f"DES key length must be 8, 16 or 24, not {length}")
    return adjust_odd_parity(os.urandom(length))
