"""The fleet file (docs/contracts.md "Files shared between programs").

``{"terminals": [{"terminal_id": "10000001", "merchant_id": "898100000000001",
"tmk": "<32 hex clear TMK>"}]}`` — written by ``posp terminal provision-fleet``
(``posp.lab.fleet``) and read by ``posp-fleet``, ``posp-conformance`` and the next
``provision-fleet`` (which keeps terminals whose clear TMK it still knows).
One module for both sides, so writer and readers cannot drift apart.

Invariants: every entry read has an 8-character terminal id, a 15-character
merchant id and a 16- or 32-hex-digit TMK; errors name the entry and the key,
never the TMK's value.  ``repr`` of an entry hides the TMK.  The file holds
clear lab TMKs: it is created readable by its owner only (mode 0600 from the
first byte) and replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posp.errors import ConfigError

_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class FleetTerminal:
    """One provisioned terminal and its clear terminal master key."""

    terminal_id: str
    merchant_id: str
    tmk: bytes

    def __repr__(self) -> str:
        return f"FleetTerminal({self.terminal_id!r}, {self.merchant_id!r}, tmk=<redacted>)"


def _entry(index: int, raw: Any) -> FleetTerminal:
    if not isinstance(raw, dict):
        raise ConfigError(f"fleet file entry {index} is not an object")
    values: dict[str, str] = {}
    for key in ("terminal_id", "merchant_id", "tmk"):
        value = raw.get(key)
        if not isinstance(value, str):
            raise ConfigError(f"fleet file entry {index}: {key!r} missing or not a string")
        values[key] = value
    if len(values["terminal_id"]) != 8:
        raise ConfigError(f"fleet file entry {index}: terminal_id must be 8 characters")
    if len(values["merchant_id"]) != 15:
        raise ConfigError(f"fleet file entry {index}: merchant_id must be 15 characters")
    tmk = values["tmk"]
    if len(tmk) not in (16, 32) or not set(tmk) <= _HEX:
        raise ConfigError(f"fleet file entry {index}: tmk must be 16 or 32 hex digits")
    return FleetTerminal(values["terminal_id"], values["merchant_id"], bytes.fromhex(tmk))


def parse_fleet(document: Any) -> list[FleetTerminal]:
    """Validate a decoded fleet document; ConfigError names the bad entry."""
    if not isinstance(document, dict) or not isinstance(document.get("terminals"), list):
        raise ConfigError('fleet file must be an object with a "terminals" list')
    return [_entry(i, raw) for i, raw in enumerate(document["terminals"])]


def read_fleet_file(path: str | Path) -> list[FleetTerminal]:
    """Read and validate a fleet file; ConfigError on a missing/bad file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read fleet file {path}: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"fleet file {path} is not JSON (line {exc.lineno})") from exc
    return parse_fleet(document)


def known_tmks(path: str | Path) -> dict[str, bytes]:
    """terminal id -> clear TMK from an earlier fleet file; empty when the file is
    absent or not a valid fleet file (its terminals are then simply re-keyed)."""
    try:
        return {t.terminal_id: t.tmk for t in read_fleet_file(path)}
    except ConfigError:
        return {}


def write_fleet_file(path: str | Path, terminals: list[FleetTerminal]) -> None:
    """Write a fleet file atomically, readable only by its owner (it holds clear TMKs)."""
    document = {
        "terminals": [
            {"terminal_id": t.terminal_id, "merchant_id": t.merchant_id, "tmk": t.tmk.hex().upper()}
            for t in terminals
        ]
    }
    target = Path(path)  # its directory must exist: nothing here creates one
    # A fresh temporary file of our own (O_EXCL, mode 0600) beside the target: never
    # a leftover or planted file, nor one another writer is filling.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
