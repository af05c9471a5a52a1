"""The sign-in key block in F62 (terminal-link.md §3.1).

Layouts by 60.3 network-management code:

* ``001`` 24 bytes: PIK 8 + CV 4 + MAK 8 + CV 4 (single-length keys)
* ``003`` 40 bytes: PIK 16 + CV 4 + MAK slot 16 (8 encrypted bytes + 8 zero
  bytes) + CV 4
* ``004`` 60 bytes: as 003 + TDK 16 + CV 4

Keys are 3DES-ECB encrypted under the TMK; CV = the first 4 bytes of
E(clear key, 0^8), single DES for the 8-byte MAK.  Errors never carry key
bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from posp.crypto.des import check_value, tdes_decrypt_ecb, tdes_encrypt_ecb
from posp.errors import CheckValueMismatch, DecodeError, EncodeError

F62 = 62
CV_BYTES = 4
MAK_BYTES = 8
# net code -> (PIK length, MAK slot length, TDK length or 0)
_LAYOUTS: dict[str, tuple[int, int, int]] = {
    "001": (8, 8, 0),
    "003": (16, 16, 0),
    "004": (16, 16, 16),
}


@dataclass(frozen=True)
class EncryptedWorkingKeys:
    """Working keys as they travel in F62: encrypted under the TMK, with 4-byte CVs."""

    pik: bytes
    pik_cv: bytes
    mak: bytes  # the 8 encrypted MAK bytes (without the zero filler of the 16-byte slot)
    mak_cv: bytes
    tdk: bytes | None = None
    tdk_cv: bytes | None = None

    def __repr__(self) -> str:
        return f"EncryptedWorkingKeys(pik=<{len(self.pik)} bytes>, tdk={self.tdk is not None})"


@dataclass(frozen=True)
class ClearWorkingKeys:
    """Clear working keys (terminal side and tests only)."""

    pik: bytes
    mak: bytes
    tdk: bytes | None

    def __repr__(self) -> str:
        return "ClearWorkingKeys(<redacted>)"


def f62_length(net_code: str) -> int:
    """Length in bytes of the key block for a sign-in network-management code."""
    pik_len, mak_slot, tdk_len = _layout(net_code, DecodeError)
    return pik_len + mak_slot + 2 * CV_BYTES + (tdk_len + CV_BYTES if tdk_len else 0)


def _layout(net_code: str, error: type[DecodeError] | type[EncodeError]) -> tuple[int, int, int]:
    layout = _LAYOUTS.get(net_code)
    if layout is None:
        raise error(f"no key block layout for 60.3 = {net_code!r}", field=F62)
    return layout


def build_f62(net_code: str, keys: EncryptedWorkingKeys) -> bytes:
    """Assemble the F62 key block (24 / 40 / 60 bytes) from encrypted keys and CVs."""
    pik_len, mak_slot, tdk_len = _layout(net_code, EncodeError)
    if len(keys.pik) != pik_len or len(keys.mak) != MAK_BYTES:
        raise EncodeError("working key lengths do not match the layout", field=F62)
    if len(keys.pik_cv) != CV_BYTES or len(keys.mak_cv) != CV_BYTES:
        raise EncodeError("check values must be 4 bytes", field=F62)
    out = keys.pik + keys.pik_cv + keys.mak + bytes(mak_slot - MAK_BYTES) + keys.mak_cv
    if tdk_len:
        if keys.tdk is None or keys.tdk_cv is None:
            raise EncodeError("layout 004 needs a TDK", field=F62)
        if len(keys.tdk) != tdk_len or len(keys.tdk_cv) != CV_BYTES:
            raise EncodeError("TDK or its check value has the wrong length", field=F62)
        out += keys.tdk + keys.tdk_cv
    return out


def parse_f62(net_code: str, f62: bytes) -> EncryptedWorkingKeys:
    """Split an F62 key block; DecodeError(field=62) when its length does not fit."""
    pik_len, mak_slot, tdk_len = _layout(net_code, DecodeError)
    expected = f62_length(net_code)
    if len(f62) != expected:
        raise DecodeError(f"key block is {len(f62)} bytes, expected {expected}", field=F62)
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        chunk = f62[pos : pos + n]
        pos += n
        return chunk

    pik, pik_cv = take(pik_len), take(CV_BYTES)
    mak_slot_bytes, mak_cv = take(mak_slot), take(CV_BYTES)
    tdk = tdk_cv = None
    if tdk_len:
        tdk, tdk_cv = take(tdk_len), take(CV_BYTES)
    return EncryptedWorkingKeys(pik, pik_cv, mak_slot_bytes[:MAK_BYTES], mak_cv, tdk, tdk_cv)


def _unwrap_checked(tmk: bytes, encrypted: bytes, cv: bytes, name: str) -> bytes:
    clear = tdes_decrypt_ecb(tmk, encrypted)
    if check_value(clear, CV_BYTES) != cv:
        raise CheckValueMismatch(f"{name} check value does not match")
    return clear


def unwrap_f62(net_code: str, f62: bytes, tmk: bytes) -> ClearWorkingKeys:
    """Decrypt the working keys under the TMK, checking every CV (CheckValueMismatch)."""
    enc = parse_f62(net_code, f62)
    pik = _unwrap_checked(tmk, enc.pik, enc.pik_cv, "PIK")
    mak = _unwrap_checked(tmk, enc.mak, enc.mak_cv, "MAK")
    tdk = None
    if enc.tdk is not None and enc.tdk_cv is not None:
        tdk = _unwrap_checked(tmk, enc.tdk, enc.tdk_cv, "TDK")
    return ClearWorkingKeys(pik, mak, tdk)


def wrap_f62(net_code: str, keys: ClearWorkingKeys, tmk: bytes) -> bytes:
    """Encrypt clear working keys under the TMK into an F62 block (tests, vectors)."""
    tdk = tdk_cv = None
    if keys.tdk is not None:
        tdk, tdk_cv = tdes_encrypt_ecb(tmk, keys.tdk), check_value(keys.tdk, CV_BYTES)
    enc = EncryptedWorkingKeys(
        pik=tdes_encrypt_ecb(tmk, keys.pik),
        pik_cv=check_value(keys.pik, CV_BYTES),
        mak=tdes_encrypt_ecb(tmk, keys.mak),
        mak_cv=check_value(keys.mak, CV_BYTES),
        tdk=tdk,
        tdk_cv=tdk_cv,
    )
    return build_f62(net_code, enc)
