"""Data commands: M0/M2 (encrypt/decrypt a data block, ECB) and M6/M8 (MAC).

These are the hot path (an M8 and an M6 per purchase on each link), so the
fixed head is one table lookup, fields are read with plain slicing, the keys
come from the context's decrypted-key cache and X9.19 runs its CBC chain in
single DES (``hsm_sim.retailmac``).  Messages are binary and read by their 4H
length, never cut at 0x19.
"""

from __future__ import annotations

from hsm_sim.context import HsmContext
from hsm_sim.fields import HsmFault, Reader
from hsm_sim.keyscheme import TAK, TDK, ZAK, ZEK, KeyType, read_key, read_key_wire
from hsm_sim.retailmac import retail_mac
from posp.crypto.des import tdes_decrypt_ecb, tdes_encrypt_ecb
from posp.crypto.mac import cup_ecb_mac, iso9797_alg1
from posp.errors import CryptoError

_MAC_KEY_TYPES: dict[bytes, KeyType] = {b"003": TAK, b"008": ZAK}
_DATA_KEY_TYPES: dict[bytes, KeyType] = {b"00A": ZEK, b"00B": TDK}
# MAC algorithm -> MAC field length in hex characters
_MAC_HEX_LEN = {b"01": 8, b"03": 8, b"13": 16, b"09": 16}
_PADDINGS = {b"0": 0, b"1": 1, b"2": 2}
_INPUT_FORMATS = (b"0", b"1", b"2")

# What the fixed head of an M6/M8 (mode 1N, input format 1N, algorithm 2N, padding
# 1N, key type 3H: 8 bytes) says, for every valid head: one slice and one lookup
# instead of five checked reads.  Any other head goes through _mac_head for its fault.
_MacHead = tuple[bytes, bytes, int, int, str]  # format, algorithm, MAC hex, padding, type
_MAC_HEADS: dict[bytes, _MacHead] = {
    b"0" + fmt + alg + pad + code: (fmt, alg, hex_len, padding, kt.code)
    for fmt in _INPUT_FORMATS
    for alg, hex_len in _MAC_HEX_LEN.items()
    for pad, padding in _PADDINGS.items()
    for code, kt in _MAC_KEY_TYPES.items()
}
_MAC_HEAD_BYTES = 8


def _mac_head(r: Reader) -> _MacHead:
    """Read an M6/M8 head field by field: the fault of its first bad field."""
    if r.raw(1, "02") != b"0":
        raise HsmFault("02")
    input_format = r.raw(1, "03")
    if input_format not in _INPUT_FORMATS:
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
    return input_format, algorithm, mac_len, padding, kt.code


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
        full = retail_mac(key, data, padding)
    except CryptoError:
        raise HsmFault("06") from None
    return (full if algorithm == b"13" else full[:4]).hex().upper().encode()


def _mac_request(ctx: HsmContext, r: Reader, verify: bool) -> tuple[bytes, bytes]:
    """Parse M6/M8; return (computed MAC field, MAC field sent by M8 or b"")."""
    start = r.pos
    head = _MAC_HEADS.get(r.data[start : start + _MAC_HEAD_BYTES])
    if head is not None and start + _MAC_HEAD_BYTES <= r.end:
        r.pos = start + _MAC_HEAD_BYTES
    else:
        head = _mac_head(r)
    input_format, algorithm, mac_len, padding, type_code = head
    key_wire = read_key_wire(r)
    data = _message(r, input_format)
    sent = r.hex(mac_len).encode() if verify else b""
    r.finish()
    if padding == 0 and algorithm != b"09" and (len(data) % 8 or not data):
        raise HsmFault("06")
    key = ctx.lmk_key(type_code, key_wire, "10")
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
    if input_format not in _INPUT_FORMATS:
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
