"""A rollout over simulated terminals with real TUF verification: waves advance on
reports, injected verification failures above the threshold halt it, and no terminal
ends up on a package that did not verify."""

from __future__ import annotations

import random
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posp.store.sqlite import SqliteStore
from posp.store.tms import SqlTmsStore
from posp.tms.rollout import DONE, HALTED, RolloutService
from terminals.rollout_drive import drive_rollout
from terminals.updater import TerminalUpdater
from tests.tms.lab import Lab

_FAST_DIR = "/dev/shm" if Path("/dev/shm").is_dir() else None  # ngclient writes files per terminal


@pytest.fixture
async def world() -> AsyncIterator[tuple[Lab, SqlTmsStore]]:
    with tempfile.TemporaryDirectory(dir=_FAST_DIR) as tmp:
        store = SqliteStore(Path(tmp) / "posp.db")
        await store.open()
        try:
            yield Lab.create(Path(tmp)), SqlTmsStore(store)
        finally:
            await store.close()


def _tamper_package(path: str, data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF]) if path.startswith("targets/") else data


async def _rollout_scenario(lab: Lab, store: SqlTmsStore, count: int) -> None:
    ids = [f"T{n:07d}" for n in range(count)]
    for tid in ids:
        await store.set_group(tid, "fleet")
    fleet: dict[str, TerminalUpdater] = {tid: lab.terminal() for tid in ids}
    service = RolloutService(store)

    good = lab.publish("V2.0")
    first = await service.start("fleet", good, "V2.0", (1, 10, 100), 5.0)
    rollout, report = await drive_rollout(service, first.id, fleet)
    assert rollout.state == DONE and report.installed == count and not report.refused
    assert {u.software.app_version for u in fleet.values()} == {"V2.0"}

    bad = lab.publish("V3.0")
    second = await service.start("fleet", bad, "V3.0", (1, 10, 100), 5.0)
    wave_one = [tid for tid in ids if await service.offer(tid)]
    broken = set(random.Random(7).sample(wave_one, max(1, len(wave_one) // 10)))
    for tid in broken:  # their downloads arrive corrupted: verification must refuse them
        fleet[tid] = lab.terminal(_tamper_package, app_version="V2.0", version_counter=1)
    rollout, report = await drive_rollout(service, second.id, fleet)

    assert (
        rollout.state == HALTED
        and rollout.wave == 0
        and "failed to install" in (rollout.reason or "")
    )
    assert set(report.refused) == {"tampered"} and report.refused["tampered"] <= len(broken)
    assert all(fleet[tid].software.app_version == "V2.0" for tid in broken)
    outside = set(ids) - set(wave_one)
    assert all(fleet[tid].software.app_version == "V2.0" for tid in outside)
    assert [await service.offer(tid) for tid in ids] == [None] * count
    known = {t.terminal_id: t for t in await store.group_terminals("fleet")}
    assert {tid: known[tid].app_version for tid in ids} == {
        tid: fleet[tid].software.app_version for tid in ids
    }
    refused = [tid for tid in broken if fleet[tid].software.last_result]
    assert len(refused) == report.refused["tampered"]
    assert all(known[tid].install_result == "验证签名失败:tampered" for tid in refused)


async def test_rollout_to_200_terminals_advances_then_halts_on_injected_failures(
    world: tuple[Lab, SqlTmsStore],
) -> None:
    await _rollout_scenario(*world, count=200)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_rollout_to_10000_terminals_advances_then_halts_on_injected_failures(
    world: tuple[Lab, SqlTmsStore],
) -> None:
    await _rollout_scenario(*world, count=10_000)
