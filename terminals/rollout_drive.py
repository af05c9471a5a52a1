"""Drive a staged rollout over simulated terminals: each round, every terminal
asks for its offer (what header digit 6 would tell it), runs its TUF updater
on the offered package and uploads its status, as a 0820 ``362`` would.

Invariants:
* Verification is real: every offered terminal runs ``TerminalUpdater.install``
  (python-tuf) against the repository; nothing here decides trust.
* A round ends only after every offered terminal has reported, so the
  rollout advances between rounds exactly as reports allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from posp.store.tms import Rollout
from posp.tms.rollout import RUNNING, RolloutService
from terminals.updater import TerminalUpdater


@dataclass
class DriveReport:
    rounds: int = 0
    offered: int = 0
    installed: int = 0
    refused: dict[str, int] = field(default_factory=dict)


async def drive_rollout(
    service: RolloutService,
    rollout_id: int,
    fleet: Mapping[str, TerminalUpdater],
    *,
    max_rounds: int = 20,
) -> tuple[Rollout, DriveReport]:
    """Run rounds until the rollout stops running or no terminal is offered anything."""
    report = DriveReport()
    rollout = await service.evaluate(rollout_id)
    while rollout.state == RUNNING and report.rounds < max_rounds:
        report.rounds += 1
        offered = 0
        for terminal_id, updater in fleet.items():
            offer = await service.offer(terminal_id)
            if offer is None or offer.rollout_id != rollout_id:
                continue
            offered += 1
            refusal = updater.install(offer.target)
            if refusal is None:
                report.installed += 1
            else:
                report.refused[refusal.code] = report.refused.get(refusal.code, 0) + 1
            software = updater.software
            await service.status_upload(terminal_id, software.app_version, software.last_result)
        report.offered += offered
        rollout = await service.evaluate(rollout_id)
        if offered == 0:
            break
    return rollout, report
