"""KQ → KR: verify an ARQC and/or generate the ARPC (chip cards, terminal-link.md §8).

Request fields after ``KQ`` (hsm-reference.md §4; layout in the README):
mode 1N, scheme ID 1N, MK-AC (type 109) K, PAN/PSN 8B, ATC 2B, UN 4B,
transaction data length 2H, transaction data nB, ``;``, ARQC 8B, ARC 2B.
Response after ``KR00``: the ARPC 8B in modes 1 and 2, nothing in mode 0.

Invariants:
* The binary fields are read by length, never cut at 0x19: a 0x19 may sit
  anywhere inside PAN/PSN, ATC, UN, data, ARQC or ARC; only a 0x19 after the
  ARC starts the trailer.
* Every field is read and checked before any cryptography runs; the first bad
  field answers its code: mode 04, scheme 05, key 15 (27 for a key that is
  not double length), data length 15 (not hex) / 81 (zero, modes 0-1) / 80
  (fewer bytes than it says), a missing ``;`` 15, MK-AC parity 10.
* A cryptogram that does not verify answers 01 and nothing else; no ARPC is
  made for it, and no field value is ever logged.
"""

from __future__ import annotations

from hsm_sim.context import HsmContext
from hsm_sim.fields import HsmFault, Reader
from hsm_sim.keyscheme import read_key_wire
from posp.crypto.emv import CardKeys, Scheme

MK_AC_TYPE = "109"
MODE_VERIFY = b"0"
MODE_VERIFY_ARPC = b"1"
MODE_ARPC = b"2"
_MODES = (MODE_VERIFY, MODE_VERIFY_ARPC, MODE_ARPC)
_SCHEMES = {str(s.value).encode(): s for s in Scheme}
_DOUBLE_LENGTH_WIRE = (32, 33)  # bare 32H, or U/X + 32H


def _request(r: Reader) -> tuple[bytes, Scheme, bytes, bytes, bytes, bytes, bytes, bytes, bytes]:
    """(mode, scheme, MK-AC wire, PAN/PSN, ATC, UN, data, ARQC, ARC), each checked."""
    mode = r.raw(1, "04")
    if mode not in _MODES:
        raise HsmFault("04")
    scheme = _SCHEMES.get(r.raw(1, "05"))
    if scheme is None:
        raise HsmFault("05")
    key_wire = read_key_wire(r, bare_hex=32)
    if len(key_wire) not in _DOUBLE_LENGTH_WIRE:
        raise HsmFault("27")
    pan_psn = r.raw(8)
    atc = r.raw(2)
    un = r.raw(4)
    length = int(r.hex(2), 16)
    if length == 0 and mode != MODE_ARPC:
        raise HsmFault("81")
    data = r.raw(length, "80")
    if r.raw(1) != b";":
        raise HsmFault("15")
    arqc = r.raw(8)
    arc = r.raw(2)
    r.finish()
    return mode, scheme, key_wire, pan_psn, atc, un, data, arqc, arc


def kq_arqc_arpc(ctx: HsmContext, r: Reader) -> bytes:
    """KQ → KR: 00 [+ ARPC 8B], or 01 when the ARQC does not verify."""
    mode, scheme, key_wire, pan_psn, atc, un, data, arqc, arc = _request(r)
    imk = ctx.lmk_key(MK_AC_TYPE, key_wire, "10")
    keys = CardKeys.derive(imk, pan_psn, scheme, atc, un)
    if mode != MODE_ARPC and not keys.verify(data, arqc):
        return b"01"
    if mode == MODE_VERIFY:
        return b"00"
    return b"00" + keys.arpc(arqc, arc)
