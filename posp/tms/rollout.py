"""Staged software rollouts: a package goes to a group in cumulative waves
(1 %, 10 %, 100 % by default), each wave waiting for its terminals' reports.

Invariants:
* Wave membership is fixed at start and deterministic: terminals ranked by
  SHA-256 of (rollout seed, terminal id); wave k holds the first
  ceil(pct_k x N / 100) of them (at least one), so the same group and seed
  always give the same waves, and a terminal never leaves a wave.
* A terminal is offered the package only while the rollout runs, its wave
  has been reached, and it has not reported yet.
* ``decide`` is pure.  A wave advances only when every one of its terminals
  has reported and failures are within the threshold; failures above the
  threshold halt the rollout at once (more reports cannot bring it back).
* State changes are compare-and-set in the store: concurrent reports from two
  switch instances advance or halt a wave once.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from posp.store.tms import FAILED, INSTALLED, Rollout, TmsStore, WaveTally
from posp.tms.keys import TmsError, TmsUsageError

DEFAULT_WAVES_PCT: Final = (1.0, 10.0, 100.0)
DEFAULT_FAILURE_THRESHOLD_PCT: Final = 5.0
RUNNING, PAUSED, HALTED, DONE = "running", "paused", "halted", "done"


def plan_waves(
    seed: str, terminal_ids: Iterable[str], waves_pct: Sequence[float]
) -> dict[str, int]:
    """Each terminal's wave (0-based) for cumulative percentages ``waves_pct``."""
    check_waves(waves_pct)
    ranked = sorted(
        set(terminal_ids), key=lambda tid: hashlib.sha256(f"{seed}\0{tid}".encode()).digest()
    )
    cut_offs = [max(1, math.ceil(pct * len(ranked) / 100)) for pct in waves_pct]
    waves: dict[str, int] = {}
    for rank, tid in enumerate(ranked):
        waves[tid] = next(k for k, cut in enumerate(cut_offs) if rank < cut)
    return waves


def check_waves(waves_pct: Sequence[float]) -> None:
    increasing = all(a < b for a, b in itertools.pairwise(waves_pct))
    if not waves_pct or waves_pct[-1] != 100 or waves_pct[0] <= 0 or not increasing:
        raise TmsUsageError("--waves", "increasing percentages ending at 100 (e.g. 1,10,100)")


class Decision(enum.Enum):
    WAIT = "wait"
    ADVANCE = "advance"
    HALT = "halt"
    DONE = "done"


def decide(tally: WaveTally, failure_threshold_pct: float, last_wave: bool) -> Decision:
    if tally.members and tally.failed * 100 > failure_threshold_pct * tally.members:
        return Decision.HALT
    if tally.installed + tally.failed < tally.members:
        return Decision.WAIT
    return Decision.DONE if last_wave else Decision.ADVANCE


@dataclass(frozen=True, slots=True)
class Offer:
    rollout_id: int
    target: str
    app_version: str


class RolloutService:
    """Rollouts over a ``TmsStore``: start, offers, reports, operator controls."""

    def __init__(self, store: TmsStore) -> None:
        self.store = store

    async def start(
        self,
        group: str,
        target: str,
        app_version: str,
        waves_pct: Sequence[float] = DEFAULT_WAVES_PCT,
        failure_threshold_pct: float = DEFAULT_FAILURE_THRESHOLD_PCT,
    ) -> Rollout:
        check_waves(waves_pct)
        if not 0 <= failure_threshold_pct <= 100:
            raise TmsUsageError("--threshold", "a failure percentage 0..100")
        members = [t.terminal_id for t in await self.store.group_terminals(group)]
        if not members:
            raise TmsUsageError("--group", f"group {group!r} has no terminals")
        rollout_id = await self.store.create_rollout(
            group, target, app_version, waves_pct, failure_threshold_pct
        )
        await self.store.add_members(rollout_id, plan_waves(str(rollout_id), members, waves_pct))
        return await self._get(rollout_id)

    async def offer(self, terminal_id: str) -> Offer | None:
        """The package waiting for ``terminal_id`` (header digit 6), if any."""
        for rollout, wave, outcome in reversed(await self.store.rollouts_of(terminal_id)):
            if rollout.state == RUNNING and wave <= rollout.wave and outcome is None:
                return Offer(rollout.id, rollout.target, rollout.app_version)
        return None

    async def status_upload(
        self,
        terminal_id: str,
        app_version: str | None,
        install_result: str | None = None,
        *,
        identity: str | None = None,
        status: dict[str, str] | None = None,
    ) -> None:
        """What a 0820 ``362`` or an F59 A2/05 brings: store it, then count it in
        rollouts (a report without an application version counts in none)."""
        await self.store.record_status(
            terminal_id,
            app_version=app_version,
            install_result=install_result,
            identity=identity,
            status=status,
        )
        if app_version is not None:
            await self.report(terminal_id, app_version, install_result)

    async def report(self, terminal_id: str, app_version: str, install_result: str | None) -> None:
        """A 362 or F59 A2/05 report: record the outcome in every running rollout of the
        terminal, then let the wave advance or halt."""
        for rollout, wave, outcome in await self.store.rollouts_of(terminal_id):
            if rollout.state not in (RUNNING, PAUSED) or wave > rollout.wave or outcome is not None:
                continue
            if app_version == rollout.app_version:
                await self.store.record_outcome(rollout.id, terminal_id, INSTALLED, None)
            elif install_result and install_result != "OK":
                await self.store.record_outcome(rollout.id, terminal_id, FAILED, install_result)
            else:
                continue
            await self.evaluate(rollout.id)

    async def evaluate(self, rollout_id: int) -> Rollout:
        """Advance, halt or finish the rollout as its current wave's tally says."""
        rollout = await self._get(rollout_id)
        while rollout.state == RUNNING:
            tally = await self.store.wave_tally(rollout.id, rollout.wave)
            last = rollout.wave == len(rollout.waves_pct) - 1
            decision = decide(tally, rollout.failure_threshold_pct, last)
            if decision is Decision.HALT:
                reason = (
                    f"wave {rollout.wave + 1}: {tally.failed}/{tally.members} failed to install"
                )
                await self.store.set_rollout_state(rollout.id, (RUNNING,), HALTED, reason)
            elif decision is Decision.DONE:
                await self.store.set_rollout_state(rollout.id, (RUNNING,), DONE, None)
            elif decision is Decision.ADVANCE:
                await self.store.advance_wave(rollout.id, rollout.wave)
            else:
                return rollout
            rollout = await self._get(rollout_id)
        return rollout

    async def pause(self, rollout_id: int) -> Rollout:
        return await self._control(rollout_id, (RUNNING,), PAUSED, None)

    async def resume(self, rollout_id: int) -> Rollout:
        await self._control(rollout_id, (PAUSED,), RUNNING, None)
        return await self.evaluate(rollout_id)

    async def halt(self, rollout_id: int, reason: str = "halted by the operator") -> Rollout:
        return await self._control(rollout_id, (RUNNING, PAUSED), HALTED, reason)

    async def _control(
        self, rollout_id: int, from_states: tuple[str, ...], to_state: str, reason: str | None
    ) -> Rollout:
        if not await self.store.set_rollout_state(rollout_id, from_states, to_state, reason):
            rollout = await self._get(rollout_id)
            raise TmsError(f"rollout {rollout_id} is {rollout.state}, cannot become {to_state}")
        return await self._get(rollout_id)

    async def _get(self, rollout_id: int) -> Rollout:
        rollout = await self.store.rollout(rollout_id)
        if rollout is None:
            raise TmsError(f"no rollout {rollout_id}")
        return rollout
