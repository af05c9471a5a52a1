"""EMV chip-card cryptography: card key derivation, session keys, ARQC and ARPC.

Used by the HSM simulator (KQ) and the simulated chip cards only; the switch
never verifies or builds a cryptogram (terminal-link.md §8, network-link.md §8).

Three session-key schemes, numbered as KQ's scheme ID (hsm.md):

* ``0`` EMV common session key (EMV Book 2 A1.3.1, "CCD"): R = ATC ‖ 00×6,
  SK = 3DES(UDK)[R with byte 2 = F0] ‖ 3DES(UDK)[R with byte 2 = 0F]; the
  ARPC is computed under SK.
* ``1`` Mastercard SKD: the same derivation with R = ATC ‖ 00 00 ‖ UN; the
  ARPC is computed under the card key (UDK), as M/Chip CVN 16 does.
* ``2`` PBOC/UICS cryptogram version 01 (project extension):
  SK = 3DES(UDK)[00×6 ‖ ATC] ‖ 3DES(UDK)[00×6 ‖ ¬ATC]; ARPC under SK.

Invariants:
* The card key is EMV option A: UDK = 3DES(IMK)[Y] ‖ 3DES(IMK)[Y ⊕ FF×8],
  odd parity, Y = the rightmost 16 digits of PAN ‖ PSN, zero-filled, packed.
* Every application cryptogram is ISO 9797-1 MAC algorithm 3 with padding
  method 2 (``80 00…``) under the session key, 8 bytes.
* ARPC method 1: 3DES(key)[ARQC ⊕ (ARC ‖ 00×6)], 8 bytes.
* Pure: no I/O, no logging; errors (``CryptoError``) never carry key or data
  values.  DES ignores parity bits, so whether a session key is parity
  adjusted never changes a cryptogram.
* A session key serves one transaction and is never seen again, so its
  cipher lives in its own :class:`SessionCipher` (:func:`new_session_cipher`),
  not in ``posp.crypto.des``'s shared cache, where a stream of fresh keys would
  keep evicting the long-lived MAC and PIN keys.  Card keys (UDK, per card) and
  IMKs go through the shared cache.
* That cipher is libcrypto's DES (two key schedules, ``posp.crypto.nativedes``)
  when it loads and passes a self-test against ``cryptography`` at import
  (``NATIVE``); building ``cryptography`` contexts for a key used for two or
  three blocks cost more than the whole rest of a chip transaction's
  cryptography.  Otherwise it is :class:`ContextSessionCipher`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from posp.crypto import nativedes
from posp.crypto.des import adjust_odd_parity, tdes_encrypt_ecb, xor_bytes
from posp.crypto.mac import PADDING_80, pad
from posp.errors import CryptoError

if TYPE_CHECKING:
    from posp.crypto.nativedes import NativeDes

_FF8 = b"\xff" * 8
_ATC_BYTES = 2
_UN_BYTES = 4
_KEY_BYTES = 16
_BLOCK = 8
_ZERO_BLOCK = bytes(_BLOCK)
#: Modes hold no state (the CBC IV is fixed): one object each serves every context.
_ECB = modes.ECB()
_CBC_ZERO_IV = modes.CBC(_ZERO_BLOCK)


class Scheme(IntEnum):
    """KQ scheme ID: how the session key is derived (and which key the ARPC uses)."""

    EMV_COMMON = 0
    MASTERCARD_SKD = 1
    PBOC_V01 = 2


#: The tags of the AC data, in MAC order (terminal-link.md §8); the CVR follows them.
AC_DATA_TAGS: tuple[str, ...] = (
    "9F02",
    "9F03",
    "9F1A",
    "95",
    "5F2A",
    "9A",
    "9C",
    "9F37",
    "82",
    "9F36",
)


def pan_psn_block(pan: str, psn: str = "00") -> bytes:
    """Option A's input Y: the rightmost 16 digits of PAN ‖ PSN, zero-filled, packed (8 bytes)."""
    if not pan.isdigit() or not pan.isascii() or len(pan) > 19:
        raise CryptoError("PAN must be 1-19 decimal digits")
    if len(psn) != 2 or not psn.isdigit() or not psn.isascii():
        raise CryptoError("PAN sequence number must be 2 decimal digits")
    return bytes.fromhex((pan + psn)[-16:].zfill(16))


def derive_udk(imk: bytes, pan_psn: bytes) -> bytes:
    """EMV option A card key (UDK, ICC master key) from the issuer master key IMK-AC."""
    _check_key(imk, "IMK")
    if len(pan_psn) != _BLOCK:
        raise CryptoError("PAN/PSN block must be 8 bytes")
    return adjust_odd_parity(tdes_encrypt_ecb(imk, pan_psn + xor_bytes(pan_psn, _FF8)))


def _common_sk(udk: bytes, r: bytes) -> bytes:
    left = r[:2] + b"\xf0" + r[3:]
    right = r[:2] + b"\x0f" + r[3:]
    return adjust_odd_parity(tdes_encrypt_ecb(udk, left + right))


def _sk_emv_common(udk: bytes, atc: bytes, un: bytes) -> bytes:
    return _common_sk(udk, atc + bytes(6))


def _sk_mastercard(udk: bytes, atc: bytes, un: bytes) -> bytes:
    return _common_sk(udk, atc + b"\x00\x00" + un)


def _sk_pboc_v01(udk: bytes, atc: bytes, un: bytes) -> bytes:
    not_atc = xor_bytes(atc, b"\xff\xff")
    return tdes_encrypt_ecb(udk, bytes(6) + atc + bytes(6) + not_atc)


@dataclass(frozen=True, slots=True)
class SchemeRule:
    """What a scheme does: its session-key derivation and which key the ARPC uses."""

    session_key: Callable[[bytes, bytes, bytes], bytes]
    arpc_under_session_key: bool


SCHEMES: Mapping[Scheme, SchemeRule] = {
    Scheme.EMV_COMMON: SchemeRule(_sk_emv_common, arpc_under_session_key=True),
    Scheme.MASTERCARD_SKD: SchemeRule(_sk_mastercard, arpc_under_session_key=False),
    Scheme.PBOC_V01: SchemeRule(_sk_pboc_v01, arpc_under_session_key=True),
}


def session_key(udk: bytes, scheme: Scheme, atc: bytes, un: bytes = bytes(_UN_BYTES)) -> bytes:
    """The AC session key of ``scheme`` for one transaction (ATC 2 bytes, UN 4 bytes)."""
    _check_key(udk, "card key")
    if len(atc) != _ATC_BYTES:
        raise CryptoError("ATC must be 2 bytes")
    if len(un) != _UN_BYTES:
        raise CryptoError("unpredictable number must be 4 bytes")
    return SCHEMES[scheme].session_key(udk, atc, un)


class ContextSessionCipher:
    """A double-length session key through ``cryptography`` (where libcrypto's DES is not
    available): its own contexts, 3DES-EDE (K1 K2 K1) in ECB for the
    last MAC step and the ARPC, single-DES K1 in CBC for the MAC chain.

    The CBC context is built on the first MAC and kept for the key's other MACs
    (a card computes the ARQC and then the TC or AAC under one session key): a
    context keeps chaining from its last ciphertext block, so the next MAC's first
    block is XORed with that block, which starts a fresh chain from a zero IV.
    Calls run to completion without yielding, so no two MACs interleave."""

    __slots__ = ("_chain", "_ede", "_k1", "_last")

    def __init__(self, sk: bytes) -> None:
        _check_key(sk, "session key")
        self._ede = Cipher(TripleDES(sk + sk[:8]), _ECB).encryptor()
        self._k1 = sk[:8]
        self._chain: Any = None
        self._last = _ZERO_BLOCK

    def encrypt_block(self, block: bytes) -> bytes:
        out: bytes = self._ede.update(block)
        return out

    def mac(self, data: bytes) -> bytes:
        """ISO 9797-1 alg 3, padding method 2: E_K1(D_K2(E_K1(x_n xor H_n-1))) is
        3DES-EDE of the last block xor the single-DES CBC chain of the others."""
        padded = pad(data, PADDING_80)
        last = padded[-_BLOCK:]
        if len(padded) > _BLOCK:
            if self._chain is None:
                self._chain = Cipher(TripleDES(self._k1 * 3), _CBC_ZERO_IV).encryptor()
            head = (
                int.from_bytes(padded[:_BLOCK], "big") ^ int.from_bytes(self._last, "big")
            ).to_bytes(_BLOCK, "big")
            chained: bytes = self._chain.update(head + padded[_BLOCK:-_BLOCK])
            self._last = chained[-_BLOCK:]
            last = xor_bytes(self._last, last)
        return self.encrypt_block(last)


class NativeSessionCipher:
    """A double-length session key through libcrypto's DES (``posp.crypto.nativedes``):
    two key schedules, no cipher context; the same bytes as :class:`ContextSessionCipher`."""

    __slots__ = ("_des", "_ks1", "_ks2")

    def __init__(self, sk: bytes, des: NativeDes) -> None:
        _check_key(sk, "session key")
        self._des = des
        self._ks1 = des.schedule(sk[:_BLOCK])
        self._ks2 = des.schedule(sk[_BLOCK:])

    def encrypt_block(self, block: bytes) -> bytes:
        if len(block) != _BLOCK:
            raise CryptoError("a DES block is 8 bytes")
        return self._des.ede(self._ks1, self._ks2, block)

    def mac(self, data: bytes) -> bytes:
        """ISO 9797-1 alg 3, padding method 2 (see :meth:`ContextSessionCipher.mac`)."""
        padded = pad(data, PADDING_80)
        head = len(padded) - _BLOCK
        last = padded[head:]
        if head:
            last = xor_bytes(self._des.cbc_last(self._ks1, padded, head), last)
        return self._des.ede(self._ks1, self._ks2, last)


class SessionCipher(Protocol):
    """What a transaction does with its session key: MACs and single 3DES blocks."""

    def encrypt_block(self, block: bytes) -> bytes: ...

    def mac(self, data: bytes) -> bytes: ...


def _native_session_ciphers() -> Callable[[bytes], SessionCipher] | None:
    """NativeSessionCipher when libcrypto's DES loads and agrees with ``cryptography``
    on every MAC length a transaction uses and on single blocks."""
    des = nativedes.load()
    if des is None:
        return None
    try:
        for n in range(4):
            sk = bytes((17 * n + i * 29 + 3) % 256 for i in range(_KEY_BYTES))
            native, context = NativeSessionCipher(sk, des), ContextSessionCipher(sk)
            for size in (0, 7, 8, 9, 37, 40, 63, 120):
                data = bytes((i * 7 + n) % 256 for i in range(size))
                if native.mac(data) != context.mac(data):
                    return None
            if native.encrypt_block(sk[3:11]) != context.encrypt_block(sk[3:11]):
                return None
    except (OSError, ValueError, CryptoError):
        return None
    return lambda sk: NativeSessionCipher(sk, des)


def application_cryptogram(sk: bytes, data: bytes) -> bytes:
    """ARQC / TC / AAC: ISO 9797-1 alg 3, padding method 2, over the AC data (8 bytes)."""
    return new_session_cipher(sk).mac(data)


def arpc_method1(key: bytes, arqc: bytes, arc: bytes) -> bytes:
    """ARPC method 1: 3DES(key)[ARQC ⊕ (ARC ‖ 00×6)]."""
    if len(arqc) != _BLOCK:
        raise CryptoError("ARQC must be 8 bytes")
    if len(arc) != 2:
        raise CryptoError("ARC must be 2 bytes")
    return tdes_encrypt_ecb(key, xor_bytes(arqc, arc + bytes(6)))


class CardKeys:
    """One transaction's keys: the card key (UDK) and the session key under a scheme."""

    __slots__ = ("_cipher", "scheme", "sk", "udk")

    def __init__(self, scheme: Scheme, udk: bytes, sk: bytes) -> None:
        self.scheme, self.udk, self.sk = scheme, udk, sk
        self._cipher = new_session_cipher(sk)

    @classmethod
    def derive(
        cls, imk: bytes, pan_psn: bytes, scheme: Scheme, atc: bytes, un: bytes = bytes(4)
    ) -> CardKeys:
        udk = derive_udk(imk, pan_psn)
        return cls(scheme, udk, session_key(udk, scheme, atc, un))

    def cryptogram(self, data: bytes) -> bytes:
        """The AC the card computes over ``data`` (ARQC on the first GENERATE AC)."""
        return self._cipher.mac(data)

    def verify(self, data: bytes, arqc: bytes) -> bool:
        """Whether ``arqc`` is the cryptogram over ``data`` (constant-time compare)."""
        return hmac.compare_digest(self.cryptogram(data), arqc)

    def arpc(self, arqc: bytes, arc: bytes) -> bytes:
        """The ARPC (method 1) under the key the scheme prescribes."""
        if not SCHEMES[self.scheme].arpc_under_session_key:
            return arpc_method1(self.udk, arqc, arc)
        if len(arqc) != _BLOCK or len(arc) != 2:
            raise CryptoError("ARQC must be 8 bytes and ARC 2 bytes")
        return self._cipher.encrypt_block(xor_bytes(arqc, arc + bytes(6)))

    def __repr__(self) -> str:
        return f"CardKeys(scheme={self.scheme.name})"


#: Length of an issuer script command's MAC (the leftmost bytes of the alg 3 MAC).
SCRIPT_MAC_BYTES = 4


def script_session_key(udk_smi: bytes, arqc: bytes) -> bytes:
    """Secure-messaging integrity key: the EMV common session key with R = the ARQC."""
    _check_key(udk_smi, "card SMI key")
    if len(arqc) != _BLOCK:
        raise CryptoError("ARQC must be 8 bytes")
    return _common_sk(udk_smi, arqc)


def script_mac(sk_smi: bytes, header: bytes, atc: bytes, arqc: bytes, data: bytes) -> bytes:
    """An issuer script command's MAC (EMV Book 2 §9.2.3): alg 3, padding method 2, over
    CLA INS P1 P2 Lc ‖ ATC ‖ ARQC ‖ command data, the leftmost 4 bytes."""
    if len(header) != 5:
        raise CryptoError("script command header must be 5 bytes (CLA INS P1 P2 Lc)")
    return new_session_cipher(sk_smi).mac(header + atc + arqc + data)[:SCRIPT_MAC_BYTES]


def cvr_of_iad(iad: bytes) -> bytes:
    """The CVR of CUP issuer application data (9F10 = len, DKI, CVN, CVR 4 bytes, …)."""
    if len(iad) < 7:
        raise CryptoError("issuer application data shorter than 7 bytes")
    return iad[3:7]


def cryptogram_version(iad: bytes) -> int:
    """Byte 3 of CUP issuer application data: ``01`` = PBOC/UICS cryptogram version 01."""
    if len(iad) < 3:
        raise CryptoError("issuer application data shorter than 3 bytes")
    return iad[2]


def ac_data(tags: Mapping[str, bytes]) -> bytes:
    """9F02 ‖ 9F03 ‖ 9F1A ‖ 95 ‖ 5F2A ‖ 9A ‖ 9C ‖ 9F37 ‖ 82 ‖ 9F36 ‖ CVR (from 9F10)."""
    try:
        head = b"".join([tags[tag] for tag in AC_DATA_TAGS])
        iad = tags["9F10"]
    except KeyError:
        missing = [tag for tag in (*AC_DATA_TAGS, "9F10") if tag not in tags]
        raise CryptoError(f"AC data needs tag {missing[0]}") from None
    return head + cvr_of_iad(iad)


def _check_key(key: bytes, name: str) -> None:
    if len(key) != _KEY_BYTES:
        raise CryptoError(f"{name} must be a 16-byte double-length key")


#: A session key's cipher: libcrypto's DES when it loads and passes the self-test
#: (``NATIVE``), else ``cryptography`` contexts.
_native_ciphers = _native_session_ciphers()
NATIVE = _native_ciphers is not None
new_session_cipher: Callable[[bytes], SessionCipher] = (
    _native_ciphers if _native_ciphers is not None else ContextSessionCipher
)
