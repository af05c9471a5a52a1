"""Data commands: M0/M2 (encrypt/decrypt a data block, ECB) and M6/M8 (MAC).

These are the hot path (one M8 per terminal request), so fields are read with
plain slicing and the keys come from the context's decrypted-key cache.
Messages are binary and read by their 4H length, never cut at 0x19.
"""

from __future__ import annotations

from hsm_sim.context import HsmContext
from hsm_sim.fields import HsmFault, Reader
from hsm_sim.keyscheme import TAK, TDK, ZAK, ZEK, KeyType, read_key
from posp.crypto.des import tdes_decrypt_ecb, tdes_encrypt_ecb
from posp.crypto.mac import cup_ecb_mac, iso9797_alg1, iso9797_alg3
from posp.errors import CryptoError

_MAC_KEY_TYPES: dict[bytes, KeyType] = {b"003": TAK, b"008": ZAK}
_DATA_KEY_TYPES: dict[bytes, KeyType] = {b"00A": ZEK, b"00B": TDK}
# MAC algorithm -> MAC field length in hex characters
_MAC_HEX_LEN = {b"01": 8, b"03": 8, b"13": 16, b"09": 16}
_PADDINGS = {b"0": 0, b"1": 1, b"2": 2}


def _message(r: Reader, input_format: bytes) -> bytes:
    """Message length 4H + message; hex input is decoded (fault 15 if not hex)."""
    length = int(r.hex(4), 16)
    msg = r.raw(length, "80")
    if input_format == b"1":
        try:
            return bytes.fromhex(msg.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise HsmFault("15") from None
    return msg


def _mac(key: bytes, algorithm: bytes, padding: int, data: bytes) -> bytes:
    """The MAC field (upper-case hex) for an M6/M8 algorithm code."""
    if algorithm == b"09":
        return cup_ecb_mac(key, data).hex().upper().encode()
    if algorithm != b"01" and len(key) != 16:
        raise HsmFault("27")
    try:
        if algorithm == b"01":
            return iso9797_alg1(key, data, padding)[:4].hex().upper().encode()
        full = iso9797_alg3(key, data, padding)
    except CryptoError:
        raise HsmFault("06") from None
    return (full if algorithm == b"13" else full[:4]).hex().upper().encode()


def _mac_request(ctx: HsmContext, r: Reader, verify: bool) -> tuple[bytes, bytes]:
    """Parse M6/M8; return (computed MAC field, MAC field sent by M8 or b"")."""
    if r.raw(1, "02") != b"0":
        raise HsmFault("02")
    input_format = r.raw(1, "03")
    if input_format not in (b"0", b"1", b"2"):
        raise HsmFault("03")
    algorithm = r.raw(2, "04")
    mac_len = _MAC_HEX_LEN.get(algorithm)
    if mac_len is None:
        raise HsmFault("04")
    padding = _PADDINGS.get(r.raw(1, "09"))
    if padding is None:
        raise HsmFault("09")
    kt = _MAC_KEY_TYPES.get(r.raw(3, "05").upper())
    if kt is None:
        raise HsmFault("05")
    key_field = read_key(r)
    data = _message(r, input_format)
    sent = r.hex(mac_len).encode() if verify else b""
    r.finish()
    if padding == 0 and algorithm != b"09" and (len(data) % 8 or not data):
        raise HsmFault("06")
    key = ctx.key_under_lmk(kt, key_field, "10")
    return _mac(key, algorithm, padding, data), sent


def m6_generate_mac(ctx: HsmContext, r: Reader) -> bytes:
    """M6 → M7: MAC 8H (01/03) or 16H (13, 09)."""
    mac, _ = _mac_request(ctx, r, verify=False)
    return b"00" + mac


def m8_verify_mac(ctx: HsmContext, r: Reader) -> bytes:
    """M8 → M9: 00 when the MAC verifies, 01 when it does not."""
    mac, sent = _mac_request(ctx, r, verify=True)
    return b"00" if mac == sent else b"01"


def _data_block(ctx: HsmContext, r: Reader, encrypt: bool) -> bytes:
    if r.raw(2, "02") != b"00":
        raise HsmFault("02")
    input_format = r.raw(1, "03")
    if input_format not in (b"0", b"1", b"2"):
        raise HsmFault("03")
    output_format = r.raw(1, "04")
    if output_format not in (b"0", b"1"):
        raise HsmFault("04")
    kt = _DATA_KEY_TYPES.get(r.raw(3, "05").upper())
    if kt is None:
        raise HsmFault("05")
    key_field = read_key(r)
    data = _message(r, input_format)
    r.finish()
    if not data or len(data) % 8:
        raise HsmFault("06")
    key = ctx.key_under_lmk(kt, key_field, "10")
    out = tdes_encrypt_ecb(key, data) if encrypt else tdes_decrypt_ecb(key, data)
    if output_format == b"1":
        out = out.hex().upper().encode()
    return b"00" + f"{len(out):04X}".encode() + out


def m0_encrypt(ctx: HsmContext, r: Reader) -> bytes:
    """M0 → M1: encrypt a data block (mode 00 ECB)."""
    return _data_block(ctx, r, encrypt=True)


def m2_decrypt(ctx: HsmContext, r: Reader) -> bytes:
    """M2 → M3: decrypt a data block (mode 00 ECB), e.g. track data under the TDK."""
    return _data_block(ctx, r, encrypt=False)
