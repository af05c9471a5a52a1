"""The typed HsmClient operations over one abstract request/response exchange.

Both clients subclass :class:`HsmOperations` and supply only ``_exchange``:
send ``command code + fields`` (no header, no length prefix) and return the
reply after the header.  Everything else (building requests, checking codes,
parsing fields) is the pure codec in :mod:`posp.hsm.wire`, so the in-process and
TCP clients behave identically by construction.
"""

from __future__ import annotations

from typing import Literal

from posp.hsm import wire
from posp.hsm.api import (
    Diagnostics,
    ExportedKey,
    GeneratedKey,
    ImportedKey,
    TranslatedPin,
)


class HsmOperations:
    """Implements every :class:`posp.hsm.api.HsmClient` method via ``_exchange``."""

    async def _exchange(self, request: bytes) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        """Release resources; the base class holds none."""

    async def echo(self, data: str = "PING") -> str:
        return wire.parse_echo(await self._exchange(wire.build_echo(data)))

    async def diagnostics(self) -> Diagnostics:
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
        request = wire.build_generate_key(
            key_type, lmk_scheme, export_under, export_kind, export_scheme
        )
        return wire.parse_generate_key(await self._exchange(request), export_under is not None)

    async def check_value(self, key_type: str, key: str, *, full: bool = False) -> str:
        request = wire.build_check_value(key_type, key, full)
        return wire.parse_check_value(await self._exchange(request))

    async def import_key(
        self, key_type: str, zmk: str, key_under_zmk: str, lmk_scheme: str = "U"
    ) -> ImportedKey:
        request = wire.build_import_key(key_type, zmk, key_under_zmk, lmk_scheme)
        return wire.parse_imported(b"A6", await self._exchange(request))

    async def export_key(
        self, key_type: str, zmk: str, key_under_lmk: str, zmk_scheme: str = "X"
    ) -> ExportedKey:
        request = wire.build_export_key(key_type, zmk, key_under_lmk, zmk_scheme)
        return wire.parse_export_key(await self._exchange(request))

    async def import_zpk(self, zmk: str, zpk_under_zmk: str) -> ImportedKey:
        request = wire.build_import_zpk(zmk, zpk_under_zmk)
        return wire.parse_imported(b"FA", await self._exchange(request))

    async def import_zak(self, zmk: str, zak_under_zmk: str) -> ImportedKey:
        request = wire.build_import_zak(zmk, zak_under_zmk)
        return wire.parse_imported(b"FK", await self._exchange(request))

    async def tpk_under_tmk(self, tmk: str, tpk: str, scheme: str = "X") -> str:
        request = wire.build_key_under_tmk(b"AE", tmk, tpk, scheme)
        return wire.parse_key_under_tmk(b"AE", await self._exchange(request))

    async def tak_under_tmk(self, tmk: str, tak: str, scheme: str = "Z") -> str:
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
        request = wire.build_translate_pin(
            b"CC", src_zpk, dst_zpk, pin_block, account12, src_format, dst_format, max_pin_length
        )
        return wire.parse_translate_pin(b"CC", await self._exchange(request))

    async def encrypt_pin(self, pin: str, account12: str) -> str:
        request = wire.build_encrypt_pin(pin, account12)
        return wire.parse_fields_text(b"BA", await self._exchange(request))

    async def generate_pvv(self, pvk_pair: str, lmk_pin: str, account12: str, pvki: str) -> str:
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
        request = wire.build_verify_pin_pvv(
            b"EC", zpk, pvk_pair, pin_block, pin_format, account12, pvki, pvv
        )
        return wire.parse_verify(b"EC", await self._exchange(request))

    async def decrypt_data(self, key_type: str, key: str, data_hex: str) -> str:
        request = wire.build_decrypt_data(key_type, key, data_hex)
        return wire.parse_decrypt_data(await self._exchange(request))

    async def generate_mac(
        self, key_type: str, key: str, data: bytes, *, algorithm: str, padding: str = "1"
    ) -> bytes:
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
        request = wire.build_mac(b"M8", key_type, key, data, algorithm, padding, mac)
        return wire.parse_verify(b"M8", await self._exchange(request))

    async def generate_component(self, key_type: str, lmk_scheme: str = "U") -> tuple[str, str]:
        request = wire.build_generate_component(key_type, lmk_scheme)
        return wire.parse_generate_component(await self._exchange(request))

    async def form_key_from_components(
        self, key_type: str, components_under_lmk: list[str], lmk_scheme: str = "U"
    ) -> ImportedKey:
        request = wire.build_form_key(key_type, components_under_lmk, lmk_scheme)
        return wire.parse_imported(b"A4", await self._exchange(request))

    async def form_key_from_clear_components(
        self, key_type: str, clear_components: list[str], lmk_scheme: str = "U"
    ) -> ImportedKey:
        request = wire.build_form_key_clear(key_type, clear_components, lmk_scheme)
        return wire.parse_imported(b"K0", await self._exchange(request))
