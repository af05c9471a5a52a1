"""State the HSM commands work on: the LMK set, caches of variant keys and of
decrypted keys, the random key source and the Authorised flag.

Invariants:
* Clear keys live only in this object's caches (bounded; cleared wholesale
  when full) and are never logged.
* Decrypted keys are cached by key type code and the key field's bytes as
  the request carried them, with their parity verdict: the variant LMK
  decryption runs once per key, and a hot command reads a key field with one
  slice and one dict lookup.  Every lookup still answers the caller's own
  parity error code for a key with bad parity.
* A key the simulator generates (A0) enters that cache under the field it
  answered with, and its check value block E(key, 0^8) enters a cache of its
  own until one BU takes it: the BU that follows a sign-in's A0 neither
  decrypts nor enciphers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from hsm_sim.fields import HsmFault
from hsm_sim.keyscheme import (
    KEY_TYPES,
    PAIR_LMK_PIN,
    KekSource,
    KeyField,
    KeyType,
    decrypt_key,
    encrypt_key,
    key_field_of_wire,
    lmk_variant_key,
)
from hsm_sim.lmk import LmkSet
from posp.crypto.des import BLOCK_BYTES, adjust_odd_parity, check_value, has_odd_parity

KeySource = Callable[[int], bytes]
K = TypeVar("K")
V = TypeVar("V")
_KEY_CACHE_MAX = 20_000


def _bounded_put(cache: dict[K, V], key: K, value: V) -> None:
    """``cache[key] = value``, the cache cleared wholesale first when it is full."""
    if len(cache) >= _KEY_CACHE_MAX:
        cache.clear()
    cache[key] = value


class HsmContext:
    """LMK-backed key operations shared by every command handler."""

    __slots__ = (
        "_check_values",
        "_keks",
        "_key_cache",
        "authorised",
        "key_source",
        "lmk",
        "lmk_pin_key",
    )

    def __init__(self, lmk: LmkSet, *, authorised: bool, key_source: KeySource | None) -> None:
        self.lmk = lmk
        self.authorised = authorised
        self.key_source: KeySource = key_source or os.urandom
        self._keks: dict[tuple[int, int], KekSource] = {}
        # (key type code, K field bytes) -> (clear key, has odd parity)
        self._key_cache: dict[tuple[str, bytes], tuple[bytes, bool]] = {}
        # clear key -> E(key, 0^8), for keys generated here
        self._check_values: dict[bytes, bytes] = {}
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
        return self.lmk_key(kt.code, field.wire().encode("ascii"), parity_fault)

    def lmk_key(self, type_code: str, wire: bytes, parity_fault: str) -> bytes:
        """The clear key of a K field (bytes from ``read_key_wire``) stored under the
        LMK as key type ``type_code``; fault ``parity_fault`` on bad parity."""
        entry = self._key_cache.get((type_code, wire))
        if entry is None:
            entry = self._decrypt(type_code, wire)
        if not entry[1]:
            raise HsmFault(parity_fault)
        return entry[0]

    def _decrypt(self, type_code: str, wire: bytes) -> tuple[bytes, bool]:
        clear = decrypt_key(self.lmk_kek(KEY_TYPES[type_code]), key_field_of_wire(wire))
        entry = (clear, has_odd_parity(clear))
        _bounded_put(self._key_cache, (type_code, wire), entry)
        return entry

    def encrypt_under_lmk(self, kt: KeyType, clear: bytes, tag: str) -> str:
        """Encrypt a clear key under the LMK as ``kt`` with scheme ``tag``; the wire field."""
        return encrypt_key(self.lmk_kek(kt), clear, tag)

    def remember_generated(self, kt: KeyType, under_lmk: str, clear: bytes) -> bytes:
        """Cache a key just generated (odd parity) under the field the answer carries,
        and its check value block; returns that block, E(key, 0^8)."""
        _bounded_put(self._key_cache, (kt.code, under_lmk.encode("ascii")), (clear, True))
        block = check_value(clear, BLOCK_BYTES)
        _bounded_put(self._check_values, clear, block)
        return block

    def check_value_block(self, clear: bytes) -> bytes:
        """E(key, 0^8): the check value block; a key generated here takes it from the
        cache once (the BU after its A0), so the cache stays near empty."""
        block = self._check_values.pop(clear, None)
        return block if block is not None else check_value(clear, BLOCK_BYTES)

    def new_key(self, length: int) -> bytes:
        """A fresh odd-parity key of ``length`` bytes from the (injectable) key source."""
        raw = self.key_source(length)
        if len(raw) != length:
            raise HsmFault("41")
        return adjust_odd_parity(raw)
