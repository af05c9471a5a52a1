"""What the HSM hands back: key type and MAC algorithm codes, typed results.

A leaf of ``posp.hsm`` (imports nothing of the package): the wire codec parses
into these types and the client returns them.

Invariant: keys appear here only encrypted (under the LMK, a ZMK or a TMK) as
upper-case hex with their scheme tag; a clear component exists only in
:meth:`posp.hsm.api.HsmClient.generate_component`'s result, for key ceremonies.
"""

from __future__ import annotations

from dataclasses import dataclass

#: M6/M8 MAC algorithm codes used by the project.
MAC_ALG_ISO9797_1 = "01"  # ISO 9797-1 alg 1, 8H MAC
MAC_ALG_X919 = "03"  # ISO 9797-1 alg 3 (X9.19), 8H MAC (4 bytes)
MAC_ALG_X919_FULL = "13"  # split field: size 1 (16H) + alg 3 -> all 8 MAC bytes (network F128)
MAC_ALG_CUP_ECB = "09"  # project extension: UnionPay POS ECB MAC -> 8 ASCII chars as 16H

#: Key type codes (variant digit + LMK pair index), hsm.md "Keys".
KEY_ZMK = "000"
KEY_ZPK = "001"
KEY_TMK = "002"
KEY_TPK = "002"
KEY_PVK = "002"
KEY_TAK = "003"
KEY_ZAK = "008"
KEY_TDK = "00B"


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A0 result: the key under the LMK, optionally under a ZMK/TMK, and its 6H KCV."""

    under_lmk: str
    kcv: str
    under_wrap: str | None = None


@dataclass(frozen=True, slots=True)
class ImportedKey:
    """A6 / FA / FK result: the key now under the LMK and its KCV."""

    under_lmk: str
    kcv: str


@dataclass(frozen=True, slots=True)
class ExportedKey:
    """A8 result: the key under the ZMK and its 6H KCV."""

    under_zmk: str
    kcv: str


@dataclass(frozen=True, slots=True)
class TranslatedPin:
    """CA / CC result."""

    pin_length: int
    pin_block: str  # 16H under the destination key
    pin_format: str  # 2N, as requested


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """NC result."""

    lmk_check: str
    firmware: str
