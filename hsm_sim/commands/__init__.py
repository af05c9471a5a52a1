"""The HSM command table: command code -> (handler, response code, ASCII-only).

A handler takes the shared ``HsmContext`` and a ``Reader`` positioned after the
command code, reads its fields, calls ``reader.finish()`` before doing any
cryptography, and returns the error code + response fields as bytes, or raises
``HsmFault`` with an error code.  ASCII-only commands have their fields cut at
the first 0x19 (trailer delimiter) before the handler runs; binary ones (B2,
M-series, KQ) read by length so that 0x19 inside data is safe.
"""

from __future__ import annotations

from collections.abc import Callable

from hsm_sim.commands import admin, ceremony, data, emv, keys, pin
from hsm_sim.context import HsmContext
from hsm_sim.fields import Reader

Handler = Callable[[HsmContext, Reader], bytes]


def response_code(command: bytes) -> bytes:
    """The command code with its second character incremented (``Z``/``9`` echoed)."""
    if len(command) != 2:
        return command
    second = command[1]
    if 0x30 <= second < 0x39 or 0x41 <= second < 0x5A or 0x61 <= second < 0x7A:
        return bytes((command[0], second + 1))
    return command


_HANDLERS: dict[str, tuple[Handler, bool]] = {
    "NC": (admin.nc_diagnostics, True),
    "B2": (admin.b2_echo, False),
    "A0": (keys.a0_generate_key, True),
    "BU": (keys.bu_check_value, True),
    "A6": (keys.a6_import_key, True),
    "A8": (keys.a8_export_key, True),
    "FA": (keys.fa_import_zpk, True),
    "FK": (keys.fk_import_zak_zek, True),
    "AE": (keys.ae_tmk_tpk_under_tmk, True),
    "AG": (keys.ag_tak_under_tmk, True),
    "CA": (pin.ca_translate_tpk_zpk, True),
    "CC": (pin.cc_translate_zpk_zpk, True),
    "BA": (pin.ba_encrypt_pin, True),
    "DG": (pin.dg_generate_pvv, True),
    "DC": (pin.dc_verify_tpk_pvv, True),
    "EC": (pin.ec_verify_zpk_pvv, True),
    "M0": (data.m0_encrypt, False),
    "M2": (data.m2_decrypt, False),
    "M6": (data.m6_generate_mac, False),
    "M8": (data.m8_verify_mac, False),
    "A2": (ceremony.a2_generate_component, True),
    "A4": (ceremony.a4_form_from_encrypted, True),
    "K0": (ceremony.k0_form_from_clear, True),
    "KQ": (emv.kq_arqc_arpc, False),
}

#: command code bytes -> (handler, response code bytes, fields are ASCII-only)
COMMANDS: dict[bytes, tuple[Handler, bytes, bool]] = {
    code.encode(): (handler, response_code(code.encode()), ascii_only)
    for code, (handler, ascii_only) in _HANDLERS.items()
}
