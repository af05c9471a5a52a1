"""Key management commands: A0, BU, A6, A8, FA, FK, AE, AG (layouts in README)."""

from __future__ import annotations

from hsm_sim.context import HsmContext
from hsm_sim.fields import HsmFault, Reader
from hsm_sim.keyscheme import (
    DEFAULT_EXPORT_SCHEME,
    SCHEME_KEY_BYTES,
    TAK,
    TMK,
    ZAK,
    ZEK,
    ZMK,
    ZPK,
    KekSource,
    KeyField,
    KeyType,
    decrypt_key,
    encrypt_key,
    key_type,
    read_key,
    read_key_wire,
    scheme_for,
)
from posp.crypto.des import adjust_odd_parity, check_value

# BU's key length flag by the K field's length on the wire: 16H (Z), tag + 32H, tag + 48H
_WIRE_LENGTH_FLAG = {16: "0", 33: "1", 49: "2"}


def kcv_hex(clear: bytes, length: int = 3) -> str:
    return check_value(clear, length).hex().upper()


def _field_bytes(field: KeyField) -> int:
    return SCHEME_KEY_BYTES[field.tag]


def a0_generate_key(ctx: HsmContext, r: Reader) -> bytes:
    """A0 → A1: generate a key; mode 1 also exports it under a ZMK (`;0`) or TMK (`;1`)."""
    mode = r.text(1)
    if mode not in ("0", "1"):
        raise HsmFault("15")
    kt = key_type(r.text(3))
    lmk_scheme = scheme_for(r.text(1).upper())
    wrap_kt: KeyType | None = None
    wrap_wire = b""  # the ZMK/TMK field as sent: the key cache's slot (no KeyField)
    export_scheme = ""
    if mode == "1":
        wrap_kt = ZMK
        if r.optional(b";"):
            flag = r.text(1)
            if flag not in ("0", "1"):
                raise HsmFault("15")
            wrap_kt = TMK if flag == "1" else ZMK
        wrap_wire = read_key_wire(r)
        export_scheme = scheme_for(r.text(1).upper())
    if r.optional(b"%") and r.digits(2) != "00":
        raise HsmFault("13")
    r.finish()
    if kt.code == "000" and not ctx.authorised:
        raise HsmFault("17")
    length = SCHEME_KEY_BYTES[lmk_scheme]
    wrap = b""
    if wrap_kt is not None:
        scheme_for(export_scheme, length)
        wrap = ctx.lmk_key(wrap_kt.code, wrap_wire, "10")
    clear = ctx.new_key(length)
    under_lmk = ctx.encrypt_under_lmk(kt, clear, lmk_scheme)
    out = "00" + under_lmk
    if wrap:
        out += encrypt_key(KekSource(wrap), clear, export_scheme)
    kcv = ctx.remember_generated(kt, under_lmk, clear)  # for the BU that may follow
    return (out + kcv[:3].hex().upper()).encode()


def _bu_type_code(code: str) -> str:
    """BU's 2-digit code: variant digit + pair index digit (``42`` → ``402``)."""
    if len(code) != 2 or not code[0].isdigit():
        raise HsmFault("04")
    return f"{code[0]}0{code[1]}"


def bu_check_value(ctx: HsmContext, r: Reader) -> bytes:
    """BU → BV: KCV of a key under the LMK, 16H by default, 6H with KCV type 1."""
    code = r.text(2).upper()
    length_flag = r.text(1)
    wire = read_key_wire(r)  # the key cache's slot (no KeyField)
    groups: list[str] = []
    while r.optional(b";"):
        groups.append(r.text(3).upper())
    r.finish()
    if len(groups) > 2 or (code == "FF" and not groups):
        raise HsmFault("15")
    options = ""
    if code == "FF" or len(groups) == 2:
        type_code = groups[0]
        options = groups[1] if len(groups) == 2 else ""
    else:
        type_code = _bu_type_code(code)
        options = groups[0] if groups else ""
    kt = key_type(type_code)
    kcv_bytes = 8
    if options:
        if options[2] not in ("0", "1"):
            raise HsmFault("15")
        kcv_bytes = 3 if options[2] == "1" else 8
    if length_flag not in ("0", "1", "2"):
        raise HsmFault("15")
    if _WIRE_LENGTH_FLAG[len(wire)] != length_flag:
        raise HsmFault("05")
    clear = ctx.lmk_key(kt.code, wire, "10")
    return ("00" + ctx.check_value_block(clear)[:kcv_bytes].hex().upper()).encode()


def _import_under_zmk(
    ctx: HsmContext, zmk_field: KeyField, key_field: KeyField
) -> tuple[bytes, bytes]:
    """Decrypt a key under a ZMK; return it with odd parity forced, and as decrypted."""
    zmk = ctx.key_under_lmk(ZMK, zmk_field, "10")
    raw = decrypt_key(KekSource(zmk), key_field)
    return adjust_odd_parity(raw), raw


def a6_import_key(ctx: HsmContext, r: Reader) -> bytes:
    """A6 → A7: a key from under a ZMK to under the LMK (01 = parity advice)."""
    kt = key_type(r.text(3))
    zmk_field = read_key(r)
    key_field = read_key(r)
    lmk_scheme = scheme_for(r.text(1).upper(), _field_bytes(key_field))
    r.finish()
    clear, raw = _import_under_zmk(ctx, zmk_field, key_field)
    code = "01" if clear != raw else "00"
    return (code + ctx.encrypt_under_lmk(kt, clear, lmk_scheme) + kcv_hex(clear)).encode()


def a8_export_key(ctx: HsmContext, r: Reader) -> bytes:
    """A8 → A9: a key from under the LMK to under a ZMK (needs the Authorised state)."""
    kt = key_type(r.text(3))
    zmk_field = read_key(r)
    key_field = read_key(r)
    zmk_scheme = scheme_for(r.text(1).upper(), _field_bytes(key_field))
    r.finish()
    if not ctx.authorised:
        raise HsmFault("17")
    zmk = ctx.key_under_lmk(ZMK, zmk_field, "10")
    clear = ctx.key_under_lmk(kt, key_field, "11")
    return ("00" + encrypt_key(KekSource(zmk), clear, zmk_scheme) + kcv_hex(clear)).encode()


def _zone_import(ctx: HsmContext, r: Reader, kt: KeyType) -> bytes:
    """FA / FK body: ZMK + key under ZMK + [`;` 0 + LMK scheme + KCV type]."""
    zmk_field = read_key(r)
    key_field = read_key(r)
    lmk_scheme = key_field.tag
    kcv_bytes = 8
    if r.optional(b";"):
        r.text(1)  # reserved
        lmk_scheme = r.text(1).upper()
        kcv_type = r.text(1)
        if kcv_type not in ("0", "1"):
            raise HsmFault("15")
        kcv_bytes = 3 if kcv_type == "1" else 8
    r.finish()
    scheme_for(lmk_scheme, _field_bytes(key_field))
    clear, raw = _import_under_zmk(ctx, zmk_field, key_field)
    if not any(raw):
        raise HsmFault("11")
    code = "01" if clear != raw else "00"
    under_lmk = ctx.encrypt_under_lmk(kt, clear, lmk_scheme)
    return (code + under_lmk + kcv_hex(clear, kcv_bytes)).encode()


def fa_import_zpk(ctx: HsmContext, r: Reader) -> bytes:
    """FA → FB: ZPK from ZMK to LMK 06-07 (01 = parity advice, parity forced)."""
    return _zone_import(ctx, r, ZPK)


def fk_import_zak_zek(ctx: HsmContext, r: Reader) -> bytes:
    """FK → FL: flag 0 = ZEK (00A), 1 = ZAK (008), from ZMK to LMK."""
    flag = r.text(1)
    if flag not in ("0", "1"):
        raise HsmFault("15")
    return _zone_import(ctx, r, ZAK if flag == "1" else ZEK)


def _under_tmk(ctx: HsmContext, r: Reader, stored_kt: KeyType) -> bytes:
    """AE / AG body: TMK + stored key + [`;` TMK scheme + 0 + 0]."""
    tmk_field = read_key(r)
    key_field = read_key(r)
    scheme = DEFAULT_EXPORT_SCHEME[_field_bytes(key_field)]
    if r.optional(b";"):
        scheme = r.text(1).upper()
        r.text(2)  # reserved
    r.finish()
    scheme_for(scheme, _field_bytes(key_field))
    tmk = ctx.key_under_lmk(TMK, tmk_field, "10")
    clear = ctx.key_under_lmk(stored_kt, key_field, "11")
    return ("00" + encrypt_key(KekSource(tmk), clear, scheme)).encode()


def ae_tmk_tpk_under_tmk(ctx: HsmContext, r: Reader) -> bytes:
    """AE → AF: a TMK/TPK/PVK (type 002) from the LMK to under a TMK."""
    return _under_tmk(ctx, r, TMK)


def ag_tak_under_tmk(ctx: HsmContext, r: Reader) -> bytes:
    """AG → AH: a TAK (type 003) from the LMK to under a TMK."""
    return _under_tmk(ctx, r, TAK)
