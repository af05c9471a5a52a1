"""Static settings of one simulated terminal (what the installer configured).

Invariant: ``repr`` never shows the TMK.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

DEFAULT_TPDU = bytes.fromhex("6000030000")
DEFAULT_HEADER = "603100000000"
DEFAULT_OPERATOR = "01 "
CURRENCY_CNY = "156"


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    """``f60_extra`` holds the optional trailing 60.4-60.6 digits (empty = send
    only 60.1-60.3).  ``track_encryption`` asks for F53 ``2610…`` and TDK-encrypted
    35/36 when a 004 sign-in delivered a TDK.  ``mac_settlement`` adds F64 to
    settlement and batch upload (a deployment option on the switch)."""

    terminal_id: str
    merchant_id: str
    tmk: bytes
    tpdu: bytes = DEFAULT_TPDU
    header: str = DEFAULT_HEADER
    operator: str = DEFAULT_OPERATOR
    f60_extra: str = ""
    track_encryption: bool = False
    mac_settlement: bool = False
    device_serial: str | None = None
    #: Contactless (F22 07x): no PIN up to this amount (the TMS parameters will feed it).
    contactless_no_pin_limit_minor: int = 100_000

    def with_changes(self, **changes: Any) -> TerminalConfig:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "terminal_id": self.terminal_id,
            "merchant_id": self.merchant_id,
            "tmk": self.tmk.hex().upper(),
            "tpdu": self.tpdu.hex().upper(),
            "header": self.header,
            "operator": self.operator,
            "f60_extra": self.f60_extra,
            "track_encryption": self.track_encryption,
            "mac_settlement": self.mac_settlement,
            "device_serial": self.device_serial,
            "contactless_no_pin_limit_minor": self.contactless_no_pin_limit_minor,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TerminalConfig:
        return cls(
            terminal_id=raw["terminal_id"],
            merchant_id=raw["merchant_id"],
            tmk=bytes.fromhex(raw["tmk"]),
            tpdu=bytes.fromhex(raw["tpdu"]),
            header=raw["header"],
            operator=raw["operator"],
            f60_extra=raw.get("f60_extra", ""),
            track_encryption=bool(raw.get("track_encryption", False)),
            mac_settlement=bool(raw.get("mac_settlement", False)),
            device_serial=raw.get("device_serial"),
            contactless_no_pin_limit_minor=int(raw.get("contactless_no_pin_limit_minor", 100_000)),
        )

    def __repr__(self) -> str:
        return f"TerminalConfig({self.terminal_id!r}, {self.merchant_id!r}, tmk=<redacted>)"
