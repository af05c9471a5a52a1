"""State the HSM commands work on: the LMK set, caches of variant keys and of
decrypted keys, the random key source and the Authorised flag.

Invariants:
* Clear keys live only in this object's caches (bounded; cleared wholesale
  when full) and are never logged.
* ``key_under_lmk`` checks odd parity on every call, so a cached key still
  answers the caller's own parity error code.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from hsm_sim.fields import HsmFault
from hsm_sim.keyscheme import (
    PAIR_LMK_PIN,
    KekSource,
    KeyField,
    KeyType,
    decrypt_key,
    encrypt_key,
    lmk_variant_key,
)
from hsm_sim.lmk import LmkSet
from posp.crypto.des import adjust_odd_parity, has_odd_parity

KeySource = Callable[[int], bytes]
_KEY_CACHE_MAX = 20_000


class HsmContext:
    """LMK-backed key operations shared by every command handler."""

    __slots__ = ("_keks", "_key_cache", "authorised", "key_source", "lmk", "lmk_pin_key")

    def __init__(self, lmk: LmkSet, *, authorised: bool, key_source: KeySource | None) -> None:
        self.lmk = lmk
        self.authorised = authorised
        self.key_source: KeySource = key_source or os.urandom
        self._keks: dict[tuple[int, int], KekSource] = {}
        self._key_cache: dict[tuple[str, str, str], bytes] = {}
        self.lmk_pin_key = lmk.pairs[PAIR_LMK_PIN]

    def lmk_kek(self, kt: KeyType) -> KekSource:
        """The variant-adjusted LMK pair for a key type (scheme variants added per part)."""
        slot = (kt.pair, kt.variant)
        kek = self._keks.get(slot)
        if kek is None:
            kek = KekSource(lmk_variant_key(self.lmk.pairs[kt.pair], kt.variant, 0))
            self._keks[slot] = kek
        return kek

    def key_under_lmk(self, kt: KeyType, field: KeyField, parity_fault: str) -> bytes:
        """Decrypt a key stored under the LMK as ``kt``; fault ``parity_fault`` on bad parity."""
        slot = (kt.code, field.tag, field.hex)
        clear = self._key_cache.get(slot)
        if clear is None:
            clear = decrypt_key(self.lmk_kek(kt), field)
            if len(self._key_cache) >= _KEY_CACHE_MAX:
                self._key_cache.clear()
            self._key_cache[slot] = clear
        if not has_odd_parity(clear):
            raise HsmFault(parity_fault)
        return clear

    def encrypt_under_lmk(self, kt: KeyType, clear: bytes, tag: str) -> str:
        """Encrypt a clear key under the LMK as ``kt`` with scheme ``tag``; the wire field."""
        return encrypt_key(self.lmk_kek(kt), clear, tag)

    def new_key(self, length: int) -> bytes:
        """A fresh odd-parity key of ``length`` bytes from the (injectable) key source."""
        raw = self.key_source(length)
        if len(raw) != length:
            raise HsmFault("41")
        return adjust_odd_parity(raw)
