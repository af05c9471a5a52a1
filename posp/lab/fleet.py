"""``posp terminal provision-fleet``: simulated terminals with clear TMKs (labs only).

Creates ``count`` terminals ``prefix`` + sequence under one merchant, each with a
random TMK formed by the HSM, and writes the fleet file (``posp.lab.fleetfile``)
with the clear TMKs the SIMULATED terminals need.

Invariants:
* An existing terminal is never touched without ``rekey_existing``: one whose
  clear TMK the fleet file at the same path still holds (same KCV as on record)
  is kept as it is; any other existing terminal of the merchant makes the whole
  command refuse, naming it, before anything is written (a terminal keyed from
  custodian components must not be re-keyed by a lab command by accident).
* Terminals of another merchant are always left alone (reported as kept).
* No directory is created: the fleet file's directory must exist.
* Arguments are checked before any store or HSM work; errors name the argument.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from posp.admin import Admin, AdminError, check_merchant_id, odd_parity
from posp.hsm.api import KEY_TMK
from posp.lab.fleetfile import FleetTerminal, known_tmks, write_fleet_file
from posp.store.api import Terminal

MAX_FLEET = 100_000


@dataclass(slots=True)
class FleetProvisioned:
    """What ``provision_fleet`` did: terminals created or re-keyed, and those kept
    as they were (already provisioned, or registered under another merchant)."""

    merchant_created: bool
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    fleet_file: Path | None = None


@dataclass(slots=True)
class _Plan:
    """Per terminal id: kept with its known clear TMK, left alone, created, re-keyed."""

    keep: dict[str, str] = field(default_factory=dict)
    foreign: set[str] = field(default_factory=set)
    create: set[str] = field(default_factory=set)
    rekey: list[str] = field(default_factory=list)


def random_clear_tmk() -> str:
    """32 hex digits of a random double-length DES key with odd parity (lab fleets only)."""
    raw = bytearray(secrets.token_bytes(16))
    for i, byte in enumerate(raw):
        raw[i] = byte if odd_parity(byte) else byte ^ 1
    return raw.hex().upper()


def fleet_ids(count: int, prefix: str) -> list[str]:
    """The terminal ids of a fleet; AdminError names --count or --prefix when impossible."""
    if not 1 <= count <= MAX_FLEET:
        raise AdminError("--count", f"between 1 and {MAX_FLEET} terminals")
    if not prefix.isdigit() or not 1 <= len(prefix) <= 7:
        raise AdminError("--prefix", "1 to 7 digits")
    width = 8 - len(prefix)
    if count > 10**width - 1:
        raise AdminError("--count", f"prefix {prefix} leaves room for {10**width - 1}")
    return [f"{prefix}{number:0{width}d}" for number in range(1, count + 1)]


def check_fleet_file(fleet_file: Path) -> None:
    """The fleet file's directory must exist: this command creates none."""
    directory = fleet_file.parent
    if not directory.is_dir():
        raise AdminError("--fleet-file", f"directory {directory} does not exist; create it first")


async def _plan(admin: Admin, ids: list[str], merchant_id: str, fleet_file: Path) -> _Plan:
    known = {tid: tmk.hex().upper() for tid, tmk in known_tmks(fleet_file).items()}
    plan = _Plan()
    for terminal_id in ids:
        existing = await admin.store.get_terminal(terminal_id)
        if existing is None:
            plan.create.add(terminal_id)
        elif existing.merchant_id != merchant_id:
            plan.foreign.add(terminal_id)
        elif await _holds_known_tmk(admin, existing, known.get(terminal_id)):
            plan.keep[terminal_id] = known[terminal_id]
        else:
            plan.rekey.append(terminal_id)
    return plan


async def _holds_known_tmk(admin: Admin, terminal: Terminal, known_tmk: str | None) -> bool:
    """Whether the fleet file's clear TMK is the one on record (same KCV)."""
    if known_tmk is None or terminal.tmk_kcv is None:
        return False
    probe = await admin.hsm.form_key_from_clear_components(KEY_TMK, [known_tmk])
    return probe.kcv == terminal.tmk_kcv


async def provision_fleet(
    admin: Admin,
    *,
    count: int,
    merchant_id: str,
    prefix: str,
    fleet_file: Path,
    rekey_existing: bool = False,
    merchant_name: str = "posp demo merchant",
    mcc: str = "5411",
) -> FleetProvisioned:
    """Create (or keep) the fleet and write its fleet file; see the module docstring."""
    ids = fleet_ids(count, prefix)
    check_merchant_id(merchant_id, "--merchant")
    check_fleet_file(fleet_file)
    plan = await _plan(admin, ids, merchant_id, fleet_file)
    if plan.rekey and not rekey_existing:
        shown = ", ".join(plan.rekey[:5]) + (" ..." if len(plan.rekey) > 5 else "")
        raise AdminError(
            "--rekey-existing",
            f"{len(plan.rekey)} terminal(s) already exist with a TMK the fleet file does not"
            f" hold ({shown}); pass --rekey-existing to give them new TMKs",
        )
    created_merchant = False
    if await admin.store.get_merchant(merchant_id) is None:
        await admin.add_merchant(merchant_id, merchant_name, mcc)
        created_merchant = True
    result = FleetProvisioned(merchant_created=created_merchant, fleet_file=fleet_file)
    rows: list[FleetTerminal] = []
    for terminal_id in ids:
        if terminal_id in plan.foreign:
            result.skipped.append(terminal_id)
            continue
        tmk = plan.keep.get(terminal_id)
        if tmk is None:
            tmk = random_clear_tmk()
            if terminal_id in plan.create:
                await admin.add_terminal(terminal_id, merchant_id, tmk_hex=tmk)
            else:
                await admin.rotate_tmk(terminal_id, tmk)
            result.created.append(terminal_id)
        else:
            result.skipped.append(terminal_id)
        rows.append(FleetTerminal(terminal_id, merchant_id, bytes.fromhex(tmk)))
    write_fleet_file(fleet_file, rows)
    return result
