"""PIN commands: CA, CC (translate), BA (LMK-encrypt), DG (PVV), DC, EC (verify).

The LMK-encrypted PIN scheme is the simulator's own (see README): PIN ‖ Luhn
check digit, each digit added modulo 10 to a keystream derived from the
account under LMK pair 02-03.  Clear PINs never leave this module except
LMK-encrypted or inside a PIN block.
"""

from __future__ import annotations

from hsm_sim.context import HsmContext
from hsm_sim.fields import HsmFault, Reader
from hsm_sim.keyscheme import PVK, TPK, ZPK, KeyType, read_key_wire, read_pvk_pair
from posp.crypto.des import tdes_decrypt_ecb, tdes_encrypt_ecb
from posp.crypto.pinblock import (
    MAX_PIN_DIGITS,
    MIN_PIN_DIGITS,
    format03_clear,
    iso0_clear_account,
    iso0_pin_account,
)
from posp.errors import PinBlockError, PinLengthError

FORMAT_ISO0 = "01"
FORMAT_03 = "03"
_FORMATS = (FORMAT_ISO0, FORMAT_03)
_DIGITS = frozenset("0123456789")


def pin_from_block(clear: bytes, pin_format: str, account: str) -> str:
    """The PIN of a clear block: faults 24 (length) and 20 (other bad contents)."""
    if pin_format == FORMAT_ISO0:
        try:
            return iso0_pin_account(clear, account)
        except PinLengthError:
            raise HsmFault("24") from None
        except PinBlockError:
            raise HsmFault("20") from None
    digits = clear.hex().upper().rstrip("F")
    if not digits or not set(digits) <= _DIGITS:
        raise HsmFault("20")
    if not MIN_PIN_DIGITS <= len(digits) <= MAX_PIN_DIGITS:
        raise HsmFault("24")
    return digits


def pin_block(pin: str, pin_format: str, account: str) -> bytes:
    """Clear PIN block of a supported format."""
    if pin_format == FORMAT_ISO0:
        return iso0_clear_account(pin, account)
    return format03_clear(pin)


def _read_format(r: Reader) -> str:
    pin_format = r.text(2, "23")
    if pin_format not in _FORMATS:
        raise HsmFault("23")
    return pin_format


# CA/CC after the two keys: max PIN length 2N, PIN block 16H, source and destination
# format 2N each, account 12N.
_TRANSLATE_TAIL = 34
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_DIGIT_BYTES = frozenset(b"0123456789")
_FORMAT_PAIRS = {(a + b).encode(): (a, b) for a in _FORMATS for b in _FORMATS}


def _translate_tail(r: Reader) -> tuple[int, bytes, str, str, str]:
    """CA/CC fields after the keys; one slice when all of them are well formed, else
    field by field so that the first bad one answers its own fault."""
    start = r.pos
    stop = start + _TRANSLATE_TAIL
    tail = r.data[start:stop]
    formats = _FORMAT_PAIRS.get(tail[18:22])
    if (
        formats is not None
        and stop <= r.end
        and _DIGIT_BYTES.issuperset(tail[:2])
        and _HEX.issuperset(tail[2:18])
        and _DIGIT_BYTES.issuperset(tail[22:])
    ):
        r.pos = stop
        return int(tail[:2]), bytes.fromhex(tail[2:18].decode()), *formats, tail[22:].decode()
    max_len = int(r.digits(2))
    block = bytes.fromhex(r.hex(16))
    src_format = r.text(2, "23")
    dst_format = r.text(2, "23")
    return max_len, block, src_format, dst_format, r.digits(12)


def _translate(ctx: HsmContext, r: Reader, src_kt: KeyType, dst_kt: KeyType) -> bytes:
    src_wire = read_key_wire(r)
    dst_wire = read_key_wire(r)
    max_len, block, src_format, dst_format, account = _translate_tail(r)
    r.finish()
    if not MIN_PIN_DIGITS <= max_len <= MAX_PIN_DIGITS:
        raise HsmFault("15")
    if src_format not in _FORMATS or dst_format not in _FORMATS:
        raise HsmFault("23")
    src_key = ctx.lmk_key(src_kt.code, src_wire, "10")
    dst_key = ctx.lmk_key(dst_kt.code, dst_wire, "11")
    clear = tdes_decrypt_ecb(src_key, block)
    pin = pin_from_block(clear, src_format, account)
    if len(pin) > max_len:
        raise HsmFault("24")
    if src_format != dst_format or src_format != FORMAT_ISO0:
        clear = pin_block(pin, dst_format, account)
    # else: the same account and format 0 both ways, and pin_from_block accepted
    # only a canonical block, so re-encoding the PIN gives back ``clear`` itself.
    out = tdes_encrypt_ecb(dst_key, clear)
    return b"00%02d%b%b" % (len(pin), out.hex().upper().encode(), dst_format.encode())


def ca_translate_tpk_zpk(ctx: HsmContext, r: Reader) -> bytes:
    """CA → CB: PIN block from a TPK (002) to a ZPK (001)."""
    return _translate(ctx, r, TPK, ZPK)


def cc_translate_zpk_zpk(ctx: HsmContext, r: Reader) -> bytes:
    """CC → CD: PIN block from one ZPK to another."""
    return _translate(ctx, r, ZPK, ZPK)


# --- LMK-encrypted PINs (simulator scheme) ----------------------------------


def luhn_digit(digits: str) -> str:
    """The Luhn check digit to append to ``digits``."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


def _keystream(ctx: HsmContext, account: str) -> list[int]:
    b1 = tdes_encrypt_ecb(ctx.lmk_pin_key, bytes.fromhex("0000" + account))
    b2 = tdes_encrypt_ecb(ctx.lmk_pin_key, b1)
    return [int(c, 16) % 10 for c in (b1 + b2).hex()]


def lmk_encrypt_pin(ctx: HsmContext, pin: str, account: str) -> str:
    """PIN → LMK-encrypted PIN of PIN length + 1 digits."""
    plain = pin + luhn_digit(pin)
    stream = _keystream(ctx, account)
    return "".join(str((int(p) + k) % 10) for p, k in zip(plain, stream, strict=False))


def lmk_decrypt_pin(ctx: HsmContext, encrypted: str, account: str) -> str:
    """LMK-encrypted PIN → PIN; fault 14 when it does not decrypt to a valid PIN."""
    if not MIN_PIN_DIGITS + 1 <= len(encrypted) <= MAX_PIN_DIGITS + 1:
        raise HsmFault("14")
    if not set(encrypted) <= _DIGITS:
        raise HsmFault("14")
    stream = _keystream(ctx, account)
    plain = "".join(str((int(e) - k) % 10) for e, k in zip(encrypted, stream, strict=False))
    pin, check = plain[:-1], plain[-1]
    if luhn_digit(pin) != check:
        raise HsmFault("14")
    return pin


def ba_encrypt_pin(ctx: HsmContext, r: Reader) -> bytes:
    """BA → BB: clear PIN (F-padded, normally L+1 characters) + account 12N."""
    rest = r.text(r.remaining())
    r.finish()
    if len(rest) < MIN_PIN_DIGITS + 12:
        raise HsmFault("15")
    pin_field, account = rest[:-12], rest[-12:]
    if not set(account) <= _DIGITS:
        raise HsmFault("15")
    pin = pin_field.upper().rstrip("F")
    if not set(pin) <= _DIGITS:
        raise HsmFault("15")
    if not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS:
        raise HsmFault("24")
    return ("00" + lmk_encrypt_pin(ctx, pin, account)).encode()


# --- Visa PVV --------------------------------------------------------------


_DROP_HEX_LETTERS = str.maketrans("", "", "abcdef")
_DROP_DIGITS = str.maketrans("", "", "0123456789")
_HEX_LETTER_DIGITS = str.maketrans("abcdef", "012345")


def visa_pvv(pvk: bytes, account: str, pvki: str, pin: str) -> str:
    """Visa PVV (hsm-reference §4): TSP = account[1:] + PVKI + 4 PIN digits, 3DES, decimalise."""
    tsp = account[1:] + pvki + pin[:4]
    enc = tdes_encrypt_ecb(pvk, bytes.fromhex(tsp)).hex()
    digits = enc.translate(_DROP_HEX_LETTERS)
    if len(digits) < 4:  # then the letters, A-F as 0-5, left to right
        digits += enc.translate(_DROP_DIGITS).translate(_HEX_LETTER_DIGITS)
    return digits[:4]


def dg_generate_pvv(ctx: HsmContext, r: Reader) -> bytes:
    """DG → DH: PVK pair + LMK PIN (L+1 N) + account 12N + PVKI 1N → PVV 4N."""
    pvk_field = read_pvk_pair(r)
    rest = r.text(r.remaining())
    r.finish()
    if len(rest) < 13 + MIN_PIN_DIGITS + 1 or not set(rest) <= _DIGITS:
        raise HsmFault("15")
    encrypted, account, pvki = rest[:-13], rest[-13:-1], rest[-1]
    pvk = ctx.key_under_lmk(PVK, pvk_field, "10")
    pin = lmk_decrypt_pin(ctx, encrypted, account)
    return ("00" + visa_pvv(pvk, account, pvki, pin)).encode()


def _verify_pvv(ctx: HsmContext, r: Reader, key_kt: KeyType) -> bytes:
    key_wire = read_key_wire(r)
    pvk_wire = read_key_wire(r, bare_hex=32)
    block = bytes.fromhex(r.hex(16))
    pin_format = _read_format(r)
    account = r.digits(12)
    pvki = r.digits(1)
    pvv = r.digits(4)
    r.finish()
    key = ctx.lmk_key(key_kt.code, key_wire, "10")
    pvk = ctx.lmk_key(PVK.code, pvk_wire, "11")
    pin = pin_from_block(tdes_decrypt_ecb(key, block), pin_format, account)
    return b"00" if visa_pvv(pvk, account, pvki, pin) == pvv else b"01"


def dc_verify_tpk_pvv(ctx: HsmContext, r: Reader) -> bytes:
    """DC → DD: verify a PIN block under a TPK against a Visa PVV (01 = mismatch)."""
    return _verify_pvv(ctx, r, TPK)


def ec_verify_zpk_pvv(ctx: HsmContext, r: Reader) -> bytes:
    """EC → ED: verify a PIN block under a ZPK against a Visa PVV (01 = mismatch)."""
    return _verify_pvv(ctx, r, ZPK)
