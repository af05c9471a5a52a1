"""TMS storage (posp.store.tms) and rollouts over it, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from posp.store.sql_store import SqlStore
from posp.store.tms import SqlTmsStore
from posp.tms.keys import TmsError
from posp.tms.params import ParamValues, Scope, effective, processing_digit
from posp.tms.rollout import HALTED, PAUSED, RUNNING, RolloutService
from tests.store.conftest import StoreFactory


@pytest.fixture
def tms(store: SqlStore) -> SqlTmsStore:
    return SqlTmsStore(store)


async def test_param_sets_round_trip_with_a_fresh_version_on_every_write(tms: SqlTmsStore) -> None:
    first = await tms.set_param_set(Scope.GROUP, "default", ParamValues(hotline="95516"))
    second = await tms.set_param_set(Scope.GROUP, "default", ParamValues(merchant_name="上海商户"))
    stored = await tms.get_param_set(Scope.GROUP, "default")
    assert second > first and stored is not None and stored.version == second
    assert stored.values == ParamValues(merchant_name="上海商户")
    assert await tms.get_param_set(Scope.TERMINAL, "nobody") is None


async def test_a_group_change_raises_the_terminals_effective_version(tms: SqlTmsStore) -> None:
    """Terminal overrides win over group defaults; the digit asks for a download (1)
    until the terminal holds the current version."""
    group_version = await tms.set_param_set(
        Scope.GROUP, "default", ParamValues(hotline="95516", purchase_cap_minor=500_000)
    )
    own_version = await tms.set_param_set(
        Scope.TERMINAL, "T0000001", ParamValues(purchase_cap_minor=100)
    )
    membership = await tms.set_group("T0000001", "default")
    params = effective(
        await tms.get_param_set(Scope.GROUP, "default"),
        await tms.get_param_set(Scope.TERMINAL, "T0000001"),
        membership,
    )
    assert params.values == ParamValues(hotline="95516", purchase_cap_minor=100)
    assert params.version == max(group_version, own_version, membership)
    await tms.set_held_params("T0000001", params.version)
    held = await tms.terminal("T0000001")
    assert (
        held is not None and processing_digit(held.held_param_version, params.version, False) == "0"
    )
    newer = await tms.set_param_set(Scope.GROUP, "default", ParamValues(hotline="95588"))
    assert processing_digit(held.held_param_version, newer, False) == "1"


async def test_status_reports_are_stored_and_queryable(tms: SqlTmsStore) -> None:
    await tms.record_status(
        "T0000001", app_version="V1.0", identity="A201105006V1.0.0", status={"01": "7"}
    )
    await tms.record_status("T0000001", app_version=None, install_result="验证签名失败:tampered")
    known = await tms.terminal("T0000001")
    assert known is not None and known.app_version == "V1.0" and known.status == {"01": "7"}
    assert known.install_result == "验证签名失败:tampered"


def test_param_values_refuse_what_f62_cannot_carry() -> None:
    with pytest.raises(ValidationError, match="merchant_name"):
        ParamValues(merchant_name="商" * 21)
    with pytest.raises(ValidationError, match="purchase_cap_minor"):
        ParamValues(purchase_cap_minor=10**12)
    with pytest.raises(ValidationError, match="txn_mask"):
        ParamValues(txn_mask="2" * 16)


async def _group(tms: SqlTmsStore, count: int, group: str = "g1") -> list[str]:
    ids = [f"T{n:07d}" for n in range(count)]
    for tid in ids:
        await tms.set_group(tid, group)
    return ids


async def test_rollout_waves_advance_on_reports_and_offer_only_the_current_wave(
    tms: SqlTmsStore,
) -> None:
    ids = await _group(tms, 20)
    service = RolloutService(tms)
    rollout = await service.start("g1", "P8/V2.0.pkg", "V2.0", (10, 50, 100), 5.0)
    offered = [tid for tid in ids if await service.offer(tid)]
    assert len(offered) == 2 and rollout.wave == 0
    for tid in offered:
        await service.report(tid, "V2.0", "OK")
    second = [tid for tid in ids if await service.offer(tid)]
    assert len(second) == 8 and not set(second) & set(offered)
    for tid in second:
        await service.report(tid, "V2.0", "OK")
    for tid in [tid for tid in ids if await service.offer(tid)]:
        await service.report(tid, "V2.0", "OK")
    finished = await service.evaluate(rollout.id)
    assert finished.state == "done"
    assert [await service.offer(tid) for tid in ids] == [None] * len(ids)


async def test_a_wave_failing_above_the_threshold_halts_the_rollout(tms: SqlTmsStore) -> None:
    ids = await _group(tms, 40)
    service = RolloutService(tms)
    rollout = await service.start("g1", "P8/V2.0.pkg", "V2.0", (10, 100), 5.0)
    first = [tid for tid in ids if await service.offer(tid)]
    await service.report(first[0], "V1.0", "验证签名失败:tampered")
    halted = await tms.rollout(rollout.id)
    assert halted is not None and halted.state == HALTED and "1/4" in (halted.reason or "")
    assert [await service.offer(tid) for tid in ids] == [None] * len(ids)


async def test_operator_pause_resume_and_halt_are_compare_and_set(tms: SqlTmsStore) -> None:
    await _group(tms, 3)
    service = RolloutService(tms)
    rollout = await service.start("g1", "P8/V2.0.pkg", "V2.0")
    assert (await service.pause(rollout.id)).state == PAUSED
    assert (await service.resume(rollout.id)).state == RUNNING
    assert (await service.halt(rollout.id)).state == HALTED
    with pytest.raises(TmsError, match="halted"):
        await service.resume(rollout.id)


async def test_two_instances_advance_one_wave_once(factory: StoreFactory) -> None:
    one, two = SqlTmsStore(await factory.new()), SqlTmsStore(await factory.new())
    await _group(one, 10)
    rollout = await RolloutService(one).start("g1", "P8/V2.0.pkg", "V2.0", (10, 100))
    moved = await asyncio.gather(one.advance_wave(rollout.id, 0), two.advance_wave(rollout.id, 0))
    assert sorted(moved) == [False, True]
