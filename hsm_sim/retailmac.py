"""ISO 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC) with its CBC run in single DES.

``posp.crypto.mac.iso9797_alg3`` runs the CBC chain under the left key half
through ``cryptography``'s TripleDES (K1 K1 K1): ``cryptography`` has no single
DES, so every block costs three DES operations.  The network MAC covers a
whole 0200/0210 (300-400 bytes), where that chain is most of the simulator's
work on the command.  OpenSSL's libcrypto, which Python's own ``ssl`` module
already links on Linux, still exports the DES primitives; ``DES_cbc_cksum``
runs the chain once per block and returns only the last block.

The MAC is then: single-DES CBC under K1 over every block but the last, and
2-key 3DES-EDE (K1 K2 K1) of the last block XOR the chaining block, which is
exactly E_K1(D_K2(E_K1(...))) of the ISO definition.

Invariants:
* ``retail_mac`` returns the same 8 bytes as ``posp.crypto.mac.iso9797_alg3``
  for every input (tests compare them); it raises ``CryptoError`` where that does.
* The native path is used only on Linux when libcrypto loads, exports the
  functions and passes a self-test against ``posp.crypto`` at import;
  otherwise ``retail_mac`` *is* ``posp.crypto.mac.iso9797_alg3`` (``NATIVE``
  says which).
* Key schedules are cached per key half in a bounded dict, cleared wholesale
  when full (the rule of ``posp.crypto.des``); nothing is logged.
* Each call gets its own output buffer and the foreign call holds the GIL
  (``PyDLL``), so concurrent callers on several threads cannot mix results.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

from posp.crypto import nativedes
from posp.crypto.des import BLOCK_BYTES, tdes_encrypt_ecb
from posp.crypto.mac import iso9797_alg3, pad
from posp.errors import CryptoError

_SCHEDULES_MAX = 4096


class NativeDes(nativedes.NativeDes):
    """Single-DES CBC-MAC through libcrypto's ``DES_cbc_cksum`` (``posp.crypto.nativedes``),
    with the key schedules cached per key half."""

    __slots__ = ("_schedules",)

    def __init__(self, lib: ctypes.PyDLL) -> None:
        super().__init__(lib)
        self._schedules: dict[bytes, nativedes.Schedule] = {}

    def chain(self, key8: bytes, data: bytes, length: int) -> bytes:
        """The last block of single-DES CBC (zero IV) over ``data[:length]`` (whole blocks)."""
        schedule = self._schedules.get(key8)
        if schedule is None:
            schedule = self.schedule(key8)
            if len(self._schedules) >= _SCHEDULES_MAX:
                self._schedules.clear()
            self._schedules[key8] = schedule
        return self.cbc_last(schedule, data, length)

    def mac(self, key: bytes, data: bytes, padding: int) -> bytes:
        """ISO 9797-1 MAC algorithm 3 with a 16-byte key: the full 8-byte final block."""
        if len(key) != 16:
            raise CryptoError("ISO 9797-1 algorithm 3 needs a 16-byte key")
        padded = bytes(pad(data, padding))  # c_char_p takes bytes only (no copy for bytes)
        head = len(padded) - BLOCK_BYTES
        last = padded[head:]
        if head:
            chained = self.chain(key[:BLOCK_BYTES], padded, head)
            last = (int.from_bytes(chained, "big") ^ int.from_bytes(last, "big")).to_bytes(
                BLOCK_BYTES, "big"
            )
        return tdes_encrypt_ecb(key, last)

    def agrees(self) -> bool:
        """Self-test: the same MACs as ``posp.crypto`` on a few lengths and paddings."""
        key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
        sample = bytes(range(251)) * 2
        try:
            return all(
                self.mac(key, sample[:n], padding) == iso9797_alg3(key, sample[:n], padding)
                for n in (0, 7, 8, 9, 64, 337, 502)
                for padding in (1, 2)
            )
        except Exception:
            return False


def load_native() -> NativeDes | None:
    """libcrypto's DES, if it loads, exports the functions and passes ``agrees``."""
    if not sys.platform.startswith("linux"):
        return None
    for name in nativedes.LIBRARIES:
        try:
            native = NativeDes(ctypes.PyDLL(name))
        except (OSError, AttributeError):
            continue
        return native if native.agrees() else None
    return None


_native = load_native()
#: True when the CBC chain runs in libcrypto's single DES.
NATIVE = _native is not None
#: ISO 9797-1 MAC algorithm 3 (key 16 bytes, padding 0/1/2) -> the 8-byte final block.
retail_mac: Callable[[bytes, bytes, int], bytes] = (
    _native.mac if _native is not None else iso9797_alg3
)
