"""The switch's HSM client: one typed class over a small byte transport.

:class:`HsmClient` turns each HSM operation into a request (``posp.hsm.wire``
builds it), hands the bytes to its :class:`HsmTransport` and parses the reply.
A transport only moves bytes: ``exchange(command code + fields) -> reply after
the header``.  Two exist: TCP (``posp.hsm.tcp.TcpTransport``: a pool of
pipelined connections with deadlines) and, for labs, the ``hsm_sim`` engine in
this process (``posp.lab.inprocess_hsm``, chosen by ``hsm_url = "inprocess://"``).
So both behave identically by construction and one contract suite covers both.

Invariants:
* Keys cross this interface only encrypted (under the LMK, a ZMK or a TMK) as
  upper-case hex strings with their scheme tag (``U…``, ``X…``, ``Z``-less 16H).
* A non-zero HSM error code raises the typed exception from
  ``posp.errors.hsm_error_for``; the ``verify_*`` methods instead return
  ``False`` for error ``01`` (a failed verification is an answer, not a fault).
* Every call has a deadline (the transport's); an unreachable HSM raises
  ``HsmUnavailable`` / ``HsmTimeout``.
* The client adds no coroutine of its own per call: ``_exchange`` IS the
  transport's bound ``exchange``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from posp.hsm import kq, wire
from posp.hsm.kq import KqRequest, KqResult
from posp.hsm.results import (
    KEY_PVK,
    KEY_TAK,
    KEY_TDK,
    KEY_TMK,
    KEY_TPK,
    KEY_ZAK,
    KEY_ZMK,
    KEY_ZPK,
    MAC_ALG_CUP_ECB,
    MAC_ALG_ISO9797_1,
    MAC_ALG_X919,
    MAC_ALG_X919_FULL,
    Diagnostics,
    ExportedKey,
    GeneratedKey,
    ImportedKey,
    TranslatedPin,
)

__all__ = [
    "KEY_PVK",
    "KEY_TAK",
    "KEY_TDK",
    "KEY_TMK",
    "KEY_TPK",
    "KEY_ZAK",
    "KEY_ZMK",
    "KEY_ZPK",
    "MAC_ALG_CUP_ECB",
    "MAC_ALG_ISO9797_1",
    "MAC_ALG_X919",
    "MAC_ALG_X919_FULL",
    "Diagnostics",
    "ExportedKey",
    "GeneratedKey",
    "HsmClient",
    "HsmTransport",
    "ImportedKey",
    "KqRequest",
    "KqResult",
    "TranslatedPin",
]


class HsmTransport(Protocol):
    """How request bytes reach an HSM and its reply comes back."""

    @property
    def holds_keys_in_process(self) -> bool:
        """True when the LMK (hence every key) lives in THIS process: labs only."""
        ...

    async def start(self) -> None:
        """Connect (idempotent); never raises for an unreachable HSM."""
        ...

    async def exchange(self, request: bytes) -> bytes:
        """Send ``command code + fields``; return the reply after the header
        (HsmTimeout past the deadline, HsmUnavailable when no HSM is reachable)."""
        ...

    async def close(self) -> None:
        """Release connections; pending and later calls fail with HsmUnavailable."""
        ...


class HsmClient:
    """Typed async HSM operations.  Key arguments are LMK-encrypted hex with scheme tag."""

    __slots__ = ("_exchange", "transport")

    def __init__(self, transport: HsmTransport) -> None:
        self.transport = transport
        self._exchange: Callable[[bytes], Awaitable[bytes]] = transport.exchange

    @property
    def holds_keys_in_process(self) -> bool:
        return self.transport.holds_keys_in_process

    @property
    def connected(self) -> int | None:
        """Connections up (the TCP transport's pool); None for a transport that has
        none to lose (in-process).  Read by the readiness probe."""
        connected = getattr(self.transport, "connected", None)
        return None if connected is None else int(connected)

    async def start(self) -> None:
        """Connect the transport (TCP connects on the first call otherwise)."""
        await self.transport.start()

    async def close(self) -> None:
        """Release connections; pending calls fail with HsmUnavailable."""
        await self.transport.close()

    async def echo(self, data: str = "PING") -> str:
        """B2 → B3: liveness probe; returns the echoed data."""
        return wire.parse_echo(await self._exchange(wire.build_echo(data)))

    async def diagnostics(self) -> Diagnostics:
        """NC → ND."""
        return wire.parse_diagnostics(await self._exchange(wire.build_diagnostics()))

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
        request = wire.build_generate_key(
            key_type, lmk_scheme, export_under, export_kind, export_scheme
        )
        return wire.parse_generate_key(await self._exchange(request), export_under is not None)

    async def check_value(self, key_type: str, key: str, *, full: bool = False) -> str:
        """BU (code FF + ``;key_type``): 6H KCV, or 16H when ``full``."""
        request = wire.build_check_value(key_type, key, full)
        return wire.parse_check_value(await self._exchange(request))

    async def import_key(
        self, key_type: str, zmk: str, key_under_zmk: str, lmk_scheme: str = "U"
    ) -> ImportedKey:
        """A6: import a key from under a ZMK to under the LMK."""
        request = wire.build_import_key(key_type, zmk, key_under_zmk, lmk_scheme)
        return wire.parse_imported(b"A6", await self._exchange(request))

    async def export_key(
        self, key_type: str, zmk: str, key_under_lmk: str, zmk_scheme: str = "X"
    ) -> ExportedKey:
        """A8: export a key from under the LMK to under a ZMK."""
        request = wire.build_export_key(key_type, zmk, key_under_lmk, zmk_scheme)
        return wire.parse_export_key(await self._exchange(request))

    async def import_zpk(self, zmk: str, zpk_under_zmk: str) -> ImportedKey:
        """FA: ZPK from ZMK to LMK (6H KCV)."""
        request = wire.build_import_zpk(zmk, zpk_under_zmk)
        return wire.parse_imported(b"FA", await self._exchange(request))

    async def import_zak(self, zmk: str, zak_under_zmk: str) -> ImportedKey:
        """FK flag 1: ZAK from ZMK to LMK (6H KCV)."""
        request = wire.build_import_zak(zmk, zak_under_zmk)
        return wire.parse_imported(b"FK", await self._exchange(request))

    async def tpk_under_tmk(self, tmk: str, tpk: str, scheme: str = "X") -> str:
        """AE: a TPK (or TMK/PVK) from the LMK to under a TMK."""
        request = wire.build_key_under_tmk(b"AE", tmk, tpk, scheme)
        return wire.parse_key_under_tmk(b"AE", await self._exchange(request))

    async def tak_under_tmk(self, tmk: str, tak: str, scheme: str = "Z") -> str:
        """AG: a TAK from the LMK to under a TMK."""
        request = wire.build_key_under_tmk(b"AG", tmk, tak, scheme)
        return wire.parse_key_under_tmk(b"AG", await self._exchange(request))

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
        request = wire.build_translate_pin(
            b"CA", tpk, zpk, pin_block, account12, src_format, dst_format, max_pin_length
        )
        return wire.parse_translate_pin(b"CA", await self._exchange(request))

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
        request = wire.build_translate_pin(
            b"CC", src_zpk, dst_zpk, pin_block, account12, src_format, dst_format, max_pin_length
        )
        return wire.parse_translate_pin(b"CC", await self._exchange(request))

    async def encrypt_pin(self, pin: str, account12: str) -> str:
        """BA: clear PIN → PIN under LMK 02-03 (length PIN length + 1)."""
        request = wire.build_encrypt_pin(pin, account12)
        return wire.parse_fields_text(b"BA", await self._exchange(request))

    async def generate_pvv(self, pvk_pair: str, lmk_pin: str, account12: str, pvki: str) -> str:
        """DG: Visa PVV (4N) from an LMK-encrypted PIN."""
        request = wire.build_generate_pvv(pvk_pair, lmk_pin, account12, pvki)
        return wire.parse_fields_text(b"DG", await self._exchange(request))

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
        request = wire.build_verify_pin_pvv(
            b"DC", tpk, pvk_pair, pin_block, pin_format, account12, pvki, pvv
        )
        return wire.parse_verify(b"DC", await self._exchange(request))

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
        request = wire.build_verify_pin_pvv(
            b"EC", zpk, pvk_pair, pin_block, pin_format, account12, pvki, pvv
        )
        return wire.parse_verify(b"EC", await self._exchange(request))

    async def decrypt_data(self, key_type: str, key: str, data_hex: str) -> str:
        """M2 mode 00 (ECB), hex in / hex out; ``data_hex`` a multiple of 16 characters."""
        request = wire.build_decrypt_data(key_type, key, data_hex)
        return wire.parse_decrypt_data(await self._exchange(request))

    async def generate_mac(
        self, key_type: str, key: str, data: bytes, *, algorithm: str, padding: str = "1"
    ) -> bytes:
        """M6 (mode 0, binary input).  Returns the MAC as raw bytes: 4 bytes for
        01/03, 8 for 13, and the 8 ASCII characters for 09."""
        request = wire.build_mac(b"M6", key_type, key, data, algorithm, padding)
        return wire.parse_mac(await self._exchange(request), algorithm)

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
        request = wire.build_mac(b"M8", key_type, key, data, algorithm, padding, mac)
        return wire.parse_verify(b"M8", await self._exchange(request))

    async def generate_component(self, key_type: str, lmk_scheme: str = "U") -> tuple[str, str]:
        """A2: generate a key component; returns (clear component as the HSM's
        printer would print it, component under the LMK).  Key ceremonies only."""
        request = wire.build_generate_component(key_type, lmk_scheme)
        return wire.parse_generate_component(await self._exchange(request))

    async def form_key_from_components(
        self, key_type: str, components_under_lmk: list[str], lmk_scheme: str = "U"
    ) -> ImportedKey:
        """A4: XOR 2-9 components (each under the LMK) into a key under the LMK."""
        request = wire.build_form_key(key_type, components_under_lmk, lmk_scheme)
        return wire.parse_imported(b"A4", await self._exchange(request))

    async def form_key_from_clear_components(
        self, key_type: str, clear_components: list[str], lmk_scheme: str = "U"
    ) -> ImportedKey:
        """K0 (simulator extension mirroring the console's FK): form a key from
        clear components typed in by an operator (lab key injection, ``--tmk``)."""
        request = wire.build_form_key_clear(key_type, clear_components, lmk_scheme)
        return wire.parse_imported(b"K0", await self._exchange(request))

    async def verify_arqc(self, request: KqRequest) -> KqResult:
        """KQ → KR: verify a chip card's ARQC and/or make its ARPC under the IMK-AC
        (key type 109).  Error 01 is an answer (``verified=False``, no ARPC); the
        reply is read by length (its ARPC is binary), never through the ASCII check."""
        return kq.parse_kq(await self._exchange(kq.build_kq(request)), request.mode)
