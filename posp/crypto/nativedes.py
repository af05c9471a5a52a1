"""Single DES and 2- and 3-key 3DES blocks from libcrypto's DES API, without cipher contexts.

``cryptography`` only offers DES through an OpenSSL cipher context, and building
one (``Cipher(...).encryptor()``) costs far more than the few blocks a chip
session key ever enciphers: a session key serves one transaction (an ARQC, an
ARPC, a TC) and is never seen again.  OpenSSL's libcrypto, which Python's own
``ssl`` module already links on Linux, still exports the DES primitives: a key
schedule is 128 bytes set up by ``DES_set_key_unchecked``, ``DES_cbc_cksum``
runs a single-DES CBC chain and returns its last block, and
``DES_ecb3_encrypt`` enciphers one block in 3DES-EDE under three schedules.
The same holds for a fresh working key's check value (``posp.crypto.des``):
one block under a key that has no cipher context yet.

Invariants:
* :func:`load` returns a :class:`NativeDes` only on Linux when libcrypto loads
  and exports the three functions; callers self-test it against
  ``cryptography`` before use and fall back to it otherwise.
* Nothing is cached here and nothing is logged; a schedule is a buffer the
  caller owns.  Each call gets its own output buffer and the foreign call holds
  the GIL (``PyDLL``), so callers on several threads cannot mix results.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

BLOCK_BYTES = 8
SCHEDULE_BYTES = 256  # sizeof(DES_key_schedule) is 128; room to spare costs nothing
_ZERO_BLOCK = bytes(BLOCK_BYTES)
_DES_ENCRYPT = 1
LIBRARIES = ("libcrypto.so.3", "libcrypto.so.1.1")

Schedule = ctypes.Array[ctypes.c_char]
# The buffers' array types, instantiated directly (create_string_buffer is a Python call).
_ScheduleBuffer = ctypes.c_char * SCHEDULE_BYTES
_BlockBuffer = ctypes.c_char * BLOCK_BYTES
# DES_cbc_cksum(input, output block, length, schedule, ivec) -> last 32 bits
_Cksum = Callable[[bytes, Schedule, int, Schedule, bytes], int]
# DES_ecb3_encrypt(input, output, ks1, ks2, ks3, enc)
_Ecb3 = Callable[[bytes, Schedule, Schedule, Schedule, Schedule, int], None]


class NativeDes:
    """libcrypto's ``DES_set_key_unchecked``, ``DES_cbc_cksum`` and ``DES_ecb3_encrypt``."""

    __slots__ = ("_cksum", "_ecb3", "_set_key")

    def __init__(self, lib: ctypes.PyDLL) -> None:
        set_key = lib.DES_set_key_unchecked
        set_key.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        set_key.restype = None
        cksum = lib.DES_cbc_cksum
        cksum.argtypes = [
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_long,
            ctypes.c_void_p,
            ctypes.c_char_p,
        ]
        cksum.restype = ctypes.c_uint32
        ecb3 = lib.DES_ecb3_encrypt
        ecb3.argtypes = [
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
        ]
        ecb3.restype = None
        self._set_key: Callable[[bytes, Schedule], None] = set_key
        self._cksum: _Cksum = cksum
        self._ecb3: _Ecb3 = ecb3

    def schedule(self, key8: bytes) -> Schedule:
        """The key schedule of a single DES key (8 bytes; parity bits are ignored)."""
        if len(key8) != BLOCK_BYTES:
            raise ValueError("a DES key is 8 bytes")
        schedule = _ScheduleBuffer()
        self._set_key(key8, schedule)
        return schedule

    def cbc_last(self, schedule: Schedule, data: bytes, length: int) -> bytes:
        """The last block of single-DES CBC (zero IV) over ``data[:length]``, a positive
        multiple of 8 bytes."""
        if length <= 0 or length % BLOCK_BYTES or length > len(data):
            raise ValueError("CBC needs whole blocks")
        out = _BlockBuffer()
        self._cksum(data, out, length, schedule, _ZERO_BLOCK)
        return out.raw

    def ede(self, ks1: Schedule, ks2: Schedule, block: bytes) -> bytes:
        """One block of 2-key 3DES-EDE: E_K1(D_K2(E_K1(block)))."""
        if len(block) != BLOCK_BYTES:
            raise ValueError("a DES block is 8 bytes")
        out = _BlockBuffer()
        self._ecb3(block, out, ks1, ks2, ks1, _DES_ENCRYPT)
        return out.raw

    def encrypt_once(self, key24: bytes, block: bytes) -> bytes:
        """One block of 3DES-EDE under a 24-byte key K1 K2 K3 (single DES as K K K,
        2-key as K1 K2 K1), its three schedules made for this call and dropped: for a
        key that enciphers one block and is never seen again (a fresh key's check
        value)."""
        if len(key24) != 3 * BLOCK_BYTES:
            raise ValueError("a 3DES key is 24 bytes here")
        if len(block) != BLOCK_BYTES:
            raise ValueError("a DES block is 8 bytes")
        ks1, ks2, ks3 = (self.schedule(key24[i : i + BLOCK_BYTES]) for i in (0, 8, 16))
        out = _BlockBuffer()
        self._ecb3(block, out, ks1, ks2, ks3, _DES_ENCRYPT)
        return out.raw


def load() -> NativeDes | None:
    """libcrypto's DES if it loads and exports the functions (Linux only), else None."""
    if not sys.platform.startswith("linux"):
        return None
    for name in LIBRARIES:
        try:
            return NativeDes(ctypes.PyDLL(name))
        except (OSError, AttributeError):
            continue
    return None
