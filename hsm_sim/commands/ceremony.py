"""Key ceremony commands: A2 (generate a component), A4 (form a key from
components under the LMK) and the simulator extension K0 (form a key from
clear components).  See README "Key ceremony commands".

A real HSM prints A2's clear component on its secure printer; the simulator
returns it in the response instead.  Nothing here is logged.
"""

from __future__ import annotations

from hsm_sim.context import HsmContext
from hsm_sim.fields import HsmFault, Reader
from hsm_sim.keyscheme import SCHEME_KEY_BYTES, key_type, read_key, scheme_for
from posp.crypto.des import adjust_odd_parity, check_value

_MAX_COMPONENTS = 9


def _xor_all(parts: list[bytes]) -> bytes:
    acc = 0
    for part in parts:
        acc ^= int.from_bytes(part, "big")
    return acc.to_bytes(len(parts[0]), "big")


def _formed(ctx: HsmContext, code: str, scheme: str, parts: list[bytes]) -> bytes:
    clear = adjust_odd_parity(_xor_all(parts))
    under_lmk = ctx.encrypt_under_lmk(key_type(code), clear, scheme)
    return f"00{under_lmk}{check_value(clear).hex().upper()}".encode()


def a2_generate_component(ctx: HsmContext, r: Reader) -> bytes:
    """A2 → A3: key type 3H + LMK scheme 1A → component under LMK + clear component."""
    kt = key_type(r.text(3))
    scheme = scheme_for(r.text(1).upper())
    r.finish()
    component = ctx.new_key(SCHEME_KEY_BYTES[scheme])
    under_lmk = ctx.encrypt_under_lmk(kt, component, scheme)
    return f"00{under_lmk}{component.hex().upper()}".encode()


def _component_count(r: Reader, minimum: int) -> int:
    count = int(r.digits(1))
    if not minimum <= count <= _MAX_COMPONENTS:
        raise HsmFault("03")
    return count


def a4_form_from_encrypted(ctx: HsmContext, r: Reader) -> bytes:
    """A4 → A5: count 1N (2-9) + key type 3H + LMK scheme 1A + components (K, under LMK)."""
    count = _component_count(r, 2)
    code = r.text(3)
    kt = key_type(code)
    scheme = scheme_for(r.text(1).upper())
    fields = [read_key(r) for _ in range(count)]
    r.finish()
    length = SCHEME_KEY_BYTES[scheme]
    for field in fields:
        scheme_for(field.tag, length)
    parts = [ctx.key_under_lmk(kt, field, "10") for field in fields]
    return _formed(ctx, kt.code, scheme, parts)


def k0_form_from_clear(ctx: HsmContext, r: Reader) -> bytes:
    """K0 → K1: key type 3H + LMK scheme 1A + count 1N (1-9) + clear components."""
    kt = key_type(r.text(3))
    scheme = scheme_for(r.text(1).upper())
    count = _component_count(r, 1)
    hex_len = 2 * SCHEME_KEY_BYTES[scheme]
    parts = [bytes.fromhex(r.hex(hex_len)) for _ in range(count)]
    r.finish()
    # DES ignores parity bits, so forcing odd parity (as _formed does) never changes
    # what the key encrypts: test keys typed without parity still work.
    return _formed(ctx, kt.code, scheme, parts)
