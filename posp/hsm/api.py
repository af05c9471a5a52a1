"""The switch's view of an HSM: one typed async interface, two implementations.

``InProcessHsmClient`` (``posp.hsm.inprocess``) runs the ``hsm_sim`` command
engine in the same process without sockets; ``TcpHsmClient``
(``posp.hsm.tcp``) speaks the payShield-style host protocol over a pool of
pipelined TCP connections.  Both encode requests and decode responses with the
same wire codec (``posp.hsm.wire``), so the contract suite runs unchanged
against either.

Invariants:
* Keys cross this interface only encrypted (under the LMK, a ZMK or a TMK) as
  upper-case hex strings with their scheme tag (``U…``, ``X…``, ``Z``-less 16H).
* A non-zero HSM error code raises the typed exception from
  ``posp.errors.hsm_error_for``; the ``verify_*`` methods instead return
  ``False`` for error ``01`` (a failed verification is an answer, not a fault).
* Every call has a deadline; an unreachable HSM raises ``HsmUnavailable`` /
  ``HsmTimeout``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

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


class HsmClient(Protocol):
    """Typed async HSM operations.  Key arguments are LMK-encrypted hex with scheme tag."""

    async def echo(self, data: str = "PING") -> str:
        """B2 → B3: liveness probe; returns the echoed data."""
        ...

    async def diagnostics(self) -> Diagnostics:
        """NC → ND."""
        ...

    async def generate_key(
        self,
        key_type: str,
        lmk_scheme: str = "U",
        *,
        export_under: str | None = None,
        export_kind: Literal["zmk", "tmk"] = "zmk",
        export_scheme: str = "X",
    ) -> GeneratedKey:
        """A0: mode 0 when ``export_under`` is None, else mode 1 exporting under
        that ZMK (``;0``) or TMK (``;1``) with ``export_scheme`` (X / Z / U)."""
        ...

    async def check_value(self, key_type: str, key: str, *, full: bool = False) -> str:
        """BU (code FF + ``;key_type``): 6H KCV, or 16H when ``full``."""
        ...

    async def import_key(
        self, key_type: str, zmk: str, key_under_zmk: str, lmk_scheme: str = "U"
    ) -> ImportedKey:
        """A6: import a key from under a ZMK to under the LMK."""
        ...

    async def export_key(
        self, key_type: str, zmk: str, key_under_lmk: str, zmk_scheme: str = "X"
    ) -> ExportedKey:
        """A8: export a key from under the LMK to under a ZMK."""
        ...

    async def import_zpk(self, zmk: str, zpk_under_zmk: str) -> ImportedKey:
        """FA: ZPK from ZMK to LMK (6H KCV)."""
        ...

    async def import_zak(self, zmk: str, zak_under_zmk: str) -> ImportedKey:
        """FK flag 1: ZAK from ZMK to LMK (6H KCV)."""
        ...

    async def tpk_under_tmk(self, tmk: str, tpk: str, scheme: str = "X") -> str:
        """AE: a TPK (or TMK/PVK) from the LMK to under a TMK."""
        ...

    async def tak_under_tmk(self, tmk: str, tak: str, scheme: str = "Z") -> str:
        """AG: a TAK from the LMK to under a TMK."""
        ...

    async def translate_pin_tpk_to_zpk(
        self,
        tpk: str,
        zpk: str,
        pin_block: str,
        account12: str,
        *,
        src_format: str = "01",
        dst_format: str = "01",
        max_pin_length: int = 12,
    ) -> TranslatedPin:
        """CA."""
        ...

    async def translate_pin_zpk_to_zpk(
        self,
        src_zpk: str,
        dst_zpk: str,
        pin_block: str,
        account12: str,
        *,
        src_format: str = "01",
        dst_format: str = "01",
        max_pin_length: int = 12,
    ) -> TranslatedPin:
        """CC."""
        ...

    async def encrypt_pin(self, pin: str, account12: str) -> str:
        """BA: clear PIN → PIN under LMK 02-03 (length PIN length + 1)."""
        ...

    async def generate_pvv(self, pvk_pair: str, lmk_pin: str, account12: str, pvki: str) -> str:
        """DG: Visa PVV (4N) from an LMK-encrypted PIN."""
        ...

    async def verify_pin_tpk_pvv(
        self,
        tpk: str,
        pvk_pair: str,
        pin_block: str,
        pin_format: str,
        account12: str,
        pvki: str,
        pvv: str,
    ) -> bool:
        """DC: True when the PIN matches the PVV, False on error 01."""
        ...

    async def verify_pin_zpk_pvv(
        self,
        zpk: str,
        pvk_pair: str,
        pin_block: str,
        pin_format: str,
        account12: str,
        pvki: str,
        pvv: str,
    ) -> bool:
        """EC: True when the PIN matches the PVV, False on error 01."""
        ...

    async def decrypt_data(self, key_type: str, key: str, data_hex: str) -> str:
        """M2 mode 00 (ECB), hex in / hex out; ``data_hex`` a multiple of 16 characters."""
        ...

    async def generate_mac(
        self, key_type: str, key: str, data: bytes, *, algorithm: str, padding: str = "1"
    ) -> bytes:
        """M6 (mode 0, binary input).  Returns the MAC as raw bytes: 4 bytes for
        01/03, 8 for 13, and the 8 ASCII characters for 09."""
        ...

    async def verify_mac(
        self,
        key_type: str,
        key: str,
        data: bytes,
        mac: bytes,
        *,
        algorithm: str,
        padding: str = "1",
    ) -> bool:
        """M8: True when the MAC verifies, False on error 01."""
        ...

    async def generate_component(self, key_type: str, lmk_scheme: str = "U") -> tuple[str, str]:
        """A2: generate a key component; returns (clear component as the HSM's
        printer would print it, component under the LMK).  Key ceremonies only."""
        ...

    async def form_key_from_components(
        self, key_type: str, components_under_lmk: list[str], lmk_scheme: str = "U"
    ) -> ImportedKey:
        """A4: XOR 2-9 components (each under the LMK) into a key under the LMK."""
        ...

    async def form_key_from_clear_components(
        self, key_type: str, clear_components: list[str], lmk_scheme: str = "U"
    ) -> ImportedKey:
        """K0 (simulator extension mirroring the console's FK): form a key from
        clear components typed in by an operator (lab key injection, ``--tmk``)."""
        ...

    async def close(self) -> None:
        """Release connections; pending calls fail with HsmUnavailable."""
        ...
