"""KQ → KR (ARQC verify / ARPC generate) on the client side: a pure request
builder and reply parser, for the typed HSM client to wire in.

Layout (hsm-reference.md §4, ``hsm_sim/README.md`` "Chip cards"): ``KQ`` +
mode 1N + scheme ID 1N + MK-AC K (type 109) + PAN/PSN 8B + ATC 2B + UN 4B +
data length 2H + data nB + ``;`` + ARQC 8B + ARC 2B.  Reply after the header:
``KR`` + error 2N + the ARPC 8B (modes 1 and 2, error 00).

Invariants:
* :func:`build_kq` returns the command code + fields without the header and
  the length prefix, like ``posp.hsm.wire``'s builders; the binary fields go
  out as raw bytes, whatever they hold (0x19 included): the HSM reads them by
  length.
* :func:`parse_kq` reads the reply by length too, never as ASCII.  Error 00 is
  an answer (:class:`KqResult` with the ARPC when the mode makes one), 01 is
  an answer (``verified=False``, no ARPC), any other code raises the typed
  ``HsmCommandError`` of ``posp.errors.hsm_error_for``, and a reply that is
  not a KR of the right shape raises ``HsmError``.
* A bad argument raises ``ValueError`` naming the argument, never its value;
  nothing here logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from posp.crypto.emv import Scheme, pan_psn_block
from posp.errors import CryptoError, HsmError, hsm_error_for

COMMAND = b"KQ"
RESPONSE = b"KR"
KEY_MK_AC = "109"
_HEX = frozenset("0123456789ABCDEF")
_MAX_DATA_BYTES = 255
_ARPC_BYTES = 8


class KqMode(StrEnum):
    """KQ mode flag: what the HSM does with the ARQC."""

    VERIFY = "0"
    VERIFY_AND_ARPC = "1"
    ARPC_ONLY = "2"


@dataclass(frozen=True, slots=True)
class KqRequest:
    """One KQ call: the card's IMK-AC under the LMK, the transaction, the ARQC and the ARC."""

    mode: KqMode
    scheme: Scheme
    mk_ac: str  # ``U``/``X`` + 32H or bare 32H, under the LMK as key type 109
    pan_psn: bytes  # 8 bytes, see pan_psn()
    atc: bytes
    un: bytes
    data: bytes  # the AC data (posp.crypto.emv.ac_data), unpadded
    arqc: bytes
    arc: bytes  # two bytes: the answer code's ASCII characters (b"00")


@dataclass(frozen=True, slots=True)
class KqResult:
    """KR: whether the ARQC verified (always True in mode 2) and the ARPC if one was made."""

    verified: bool
    arpc: bytes | None


def pan_psn(pan: str, psn: str = "00") -> bytes:
    """KQ's PAN/PSN field: the rightmost 16 digits of PAN ‖ PSN, zero-filled, packed."""
    try:
        return pan_psn_block(pan, psn)
    except CryptoError as exc:
        raise ValueError(str(exc)) from None


def _check(request: KqRequest) -> None:
    key = request.mk_ac.upper()
    bare = key[1:] if key[:1] in ("U", "X") else key
    if len(bare) != 32 or not _HEX.issuperset(bare):
        raise ValueError("mk_ac must be U/X + 32H or 32H")
    sizes = {"pan_psn": 8, "atc": 2, "un": 4, "arqc": 8, "arc": 2}
    for name, size in sizes.items():
        if len(getattr(request, name)) != size:
            raise ValueError(f"{name} must be {size} bytes")
    if len(request.data) > _MAX_DATA_BYTES:
        raise ValueError("data must be at most 255 bytes")


def build_kq(request: KqRequest) -> bytes:
    """The KQ command (code + fields, no header) for ``request``."""
    _check(request)
    return b"".join(
        (
            COMMAND,
            request.mode.value.encode(),
            str(int(request.scheme)).encode(),
            request.mk_ac.upper().encode(),
            request.pan_psn,
            request.atc,
            request.un,
            b"%02X" % len(request.data),
            request.data,
            b";",
            request.arqc,
            request.arc,
        )
    )


def parse_kq(response: bytes, mode: KqMode) -> KqResult:
    """The reply after the header (``KR`` + error + fields [+ 0x19 + trailer])."""
    if len(response) < 4 or response[:2] != RESPONSE:
        raise HsmError("HSM answered KQ with an unexpected response code")
    error = response[2:4]
    if error == b"01":
        return KqResult(verified=False, arpc=None)
    if error != b"00":
        raise hsm_error_for("KQ", error.decode("ascii", "replace"))
    if mode is KqMode.VERIFY:
        return KqResult(verified=True, arpc=None)
    arpc = response[4 : 4 + _ARPC_BYTES]
    if len(arpc) != _ARPC_BYTES:
        raise HsmError("HSM response too short: KR ARPC")
    return KqResult(verified=True, arpc=arpc)
