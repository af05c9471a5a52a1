"""Provisioning operations over the store and the HSM: merchants, terminals, TMKs.

This is the operator's side of the registry: ``posp merchant …`` and
``posp terminal …`` are thin argument parsers over :class:`Admin`.

Invariants:
* A TMK reaches the store only under the LMK (``store.set_terminal_tmk``).  A
  generated TMK exists in clear only as two components returned once to the
  caller, to be printed for key injection and then forgotten.
* Every argument is validated before anything is written; a bad one raises
  :class:`AdminError` naming the argument (the CLI turns it into exit code 2).
* Clear TMKs leave this module only in :class:`TmkComponents` for a key
  ceremony.  Simulated fleets (clear TMKs in a file) are the lab's business:
  ``posp.lab.fleet``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from posp.errors import ConfigError, PospError, StoreError
from posp.hsm.api import KEY_TMK, HsmClient
from posp.settings import Settings
from posp.store.api import Merchant, Store, Terminal

_MERCHANT_ID: Final = re.compile(r"[0-9A-Za-z]{15}")
_TERMINAL_ID: Final = re.compile(r"[0-9A-Za-z]{8}")
_MCC: Final = re.compile(r"[0-9]{4}")
_TMK_HEX: Final = re.compile(r"[0-9A-Fa-f]{32}")
_SERIAL: Final = re.compile(r"[\x21-\x7e]{1,50}")

ACTIVE: Final = "active"
DISABLED: Final = "disabled"


class AdminError(PospError):
    """A provisioning request that cannot be carried out; ``argument`` names the culprit."""

    def __init__(self, argument: str, reason: str) -> None:
        self.argument = argument
        self.reason = reason
        super().__init__(f"{argument}: {reason}")


@dataclass(frozen=True, slots=True)
class TmkComponents:
    """A generated TMK as the HSM's printer would give it: two clear components,
    each with its KCV, and the KCV of the key they XOR to.  Shown once."""

    component_1: str
    component_1_kcv: str
    component_2: str
    component_2_kcv: str
    kcv: str


@dataclass(frozen=True, slots=True)
class TmkResult:
    """A terminal whose TMK was just set, with the components when generated."""

    terminal: Terminal
    tmk_kcv: str
    components: TmkComponents | None = None


def check_merchant_id(value: str, argument: str = "--id") -> str:
    if not _MERCHANT_ID.fullmatch(value):
        raise AdminError(argument, "a merchant id is 15 letters or digits")
    return value


def check_terminal_id(value: str, argument: str = "--id") -> str:
    if not _TERMINAL_ID.fullmatch(value):
        raise AdminError(argument, "a terminal id is 8 letters or digits")
    return value


def odd_parity(byte: int) -> bool:
    """DES keys carry odd parity in the low bit of every byte."""
    return bin(byte).count("1") % 2 == 1


def check_tmk_hex(value: str, argument: str = "--tmk") -> str:
    """A double-length clear TMK: 32 hex digits, every byte with odd parity (the
    HSM refuses others, so the operator hears it here, naming the argument)."""
    if not _TMK_HEX.fullmatch(value):
        raise AdminError(argument, "a TMK is 32 hexadecimal digits")
    if not all(odd_parity(b) for b in bytes.fromhex(value)):
        raise AdminError(argument, "every byte of a DES key must have odd parity")
    return value.upper()


class Admin:
    """Registry and key provisioning; the store and HSM are owned by the caller
    (``hsm`` may be None for commands that touch no key)."""

    def __init__(self, store: Store, hsm: HsmClient | None) -> None:
        self._store = store
        self._hsm_client = hsm

    @property
    def store(self) -> Store:
        return self._store

    @property
    def hsm(self) -> HsmClient:
        """The HSM client (ConfigError when this Admin was opened without one)."""
        if self._hsm_client is None:
            raise ConfigError("this operation needs the HSM, but none was opened")
        return self._hsm_client

    # --- merchants -------------------------------------------------------------

    async def add_merchant(self, merchant_id: str, name: str, mcc: str) -> Merchant:
        check_merchant_id(merchant_id)
        if not name.strip() or len(name) > 40:
            raise AdminError("--name", "a merchant name is 1 to 40 characters")
        if not _MCC.fullmatch(mcc):
            raise AdminError("--mcc", "a merchant category code is 4 digits")
        if await self._store.get_merchant(merchant_id) is not None:
            raise AdminError("--id", f"merchant {merchant_id} already exists")
        merchant = Merchant(merchant_id=merchant_id, name=name.strip(), category_code=mcc)
        try:
            await self._store.add_merchant(merchant)
        except StoreError as exc:
            raise AdminError("--id", f"merchant {merchant_id} could not be added") from exc
        return await self.merchant(merchant_id)

    async def merchant(self, merchant_id: str, argument: str = "ID") -> Merchant:
        found = await self._store.get_merchant(merchant_id)
        if found is None:
            raise AdminError(argument, f"no merchant {merchant_id}")
        return found

    async def list_merchants(self) -> list[Merchant]:
        return await self._store.list_merchants()

    async def set_merchant_status(self, merchant_id: str, status: str) -> Merchant:
        if not await self._store.set_merchant_status(merchant_id, status):
            raise AdminError("ID", f"no merchant {merchant_id}")
        return await self.merchant(merchant_id)

    # --- terminals -------------------------------------------------------------

    async def terminal(self, terminal_id: str, argument: str = "ID") -> Terminal:
        found = await self._store.get_terminal(terminal_id)
        if found is None:
            raise AdminError(argument, f"no terminal {terminal_id}")
        return found

    async def list_terminals(self, merchant_id: str | None = None) -> list[Terminal]:
        return await self._store.list_terminals(merchant_id)

    async def set_terminal_status(self, terminal_id: str, status: str) -> Terminal:
        if not await self._store.set_terminal_status(terminal_id, status):
            raise AdminError("ID", f"no terminal {terminal_id}")
        return await self.terminal(terminal_id)

    async def add_terminal(
        self,
        terminal_id: str,
        merchant_id: str,
        *,
        tmk_hex: str | None = None,
        serial: str | None = None,
    ) -> TmkResult:
        """Register a terminal with a TMK: imported from ``tmk_hex`` or generated as
        two components (returned once in the result for key injection)."""
        check_terminal_id(terminal_id)
        check_merchant_id(merchant_id, "--merchant")
        if tmk_hex is not None:
            tmk_hex = check_tmk_hex(tmk_hex)
        if serial is not None and not _SERIAL.fullmatch(serial):
            raise AdminError("--serial", "a device serial is 1 to 50 printable characters")
        await self.merchant(merchant_id, "--merchant")
        if await self._store.get_terminal(terminal_id) is not None:
            raise AdminError("--id", f"terminal {terminal_id} already exists")
        terminal = Terminal(terminal_id=terminal_id, merchant_id=merchant_id, device_serial=serial)
        try:
            await self._store.add_terminal(terminal)
        except StoreError as exc:
            raise AdminError("--id", f"terminal {terminal_id} could not be added") from exc
        return await self._set_tmk(terminal_id, tmk_hex)

    async def rotate_tmk(self, terminal_id: str, tmk_hex: str | None = None) -> TmkResult:
        """Replace the TMK; the store clears the working keys, so the terminal signs in again."""
        if tmk_hex is not None:
            tmk_hex = check_tmk_hex(tmk_hex)
        await self.terminal(terminal_id)
        return await self._set_tmk(terminal_id, tmk_hex)

    async def _set_tmk(self, terminal_id: str, tmk_hex: str | None) -> TmkResult:
        components: TmkComponents | None = None
        if tmk_hex is None:
            components, tmk_lmk, kcv = await self._generate_tmk()
        else:
            imported = await self.hsm.form_key_from_clear_components(KEY_TMK, [tmk_hex])
            tmk_lmk, kcv = imported.under_lmk, imported.kcv
        await self._store.set_terminal_tmk(terminal_id, tmk_lmk, kcv)
        return TmkResult(await self.terminal(terminal_id), kcv, components)

    async def _generate_tmk(self) -> tuple[TmkComponents, str, str]:
        """Two HSM-generated components (A2), their KCVs (BU), the key formed (A4)."""
        clear_1, lmk_1 = await self.hsm.generate_component(KEY_TMK)
        clear_2, lmk_2 = await self.hsm.generate_component(KEY_TMK)
        kcv_1 = await self.hsm.check_value(KEY_TMK, lmk_1)
        kcv_2 = await self.hsm.check_value(KEY_TMK, lmk_2)
        formed = await self.hsm.form_key_from_components(KEY_TMK, [lmk_1, lmk_2])
        components = TmkComponents(clear_1, kcv_1, clear_2, kcv_2, formed.kcv)
        return components, formed.under_lmk, formed.kcv


def _sqlite_path(settings: Settings) -> Path | None:
    url = settings.store_url
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    return Path(url[len("sqlite:///") :])


@asynccontextmanager
async def open_admin(
    settings: Settings, *, hsm: bool, read_only: bool = False
) -> AsyncIterator[Admin]:
    """An Admin over the store (and HSM client) named by the settings, closed on exit.
    ``read_only``: a SQLite store that does not exist is an error naming it (a typo'd
    --data-dir must not be created and reported empty)."""
    # Imported here: the store drivers and HSM transports load only for commands using them.
    from posp.hsm import open_hsm_client
    from posp.store import open_store

    sqlite_path = _sqlite_path(settings)
    if read_only and sqlite_path is not None and not sqlite_path.is_file():
        where = "data directory" if not sqlite_path.parent.is_dir() else "store file"
        missing = sqlite_path.parent if where == "data directory" else sqlite_path
        raise AdminError("--data-dir", f"{where} {missing} does not exist")
    store: Store = open_store(settings.store_url)
    await store.open()
    client: HsmClient | None = open_hsm_client(settings.hsm_url) if hsm else None
    try:
        yield Admin(store, client)
    finally:
        if client is not None:
            await client.close()
        await store.close()
