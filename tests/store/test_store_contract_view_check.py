"""The store contract, management views checked in bulk: a view's fingerprint
(``ManagementRow.fingerprint``) is what ``view_fingerprints`` gives for its
terminal, and changes with every write that changes the view; the switch's
``TerminalManagement`` serves a view past its bound on once one check of every
such view finds it unchanged, and reads it again otherwise.  Every test runs
against SqliteStore and PostgresStore; the cache's clock is moved forward."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from posp.errors import StoreUnavailable
from posp.store.ic import SqlIcStore
from posp.store.sql_store import SqlStore
from posp.store.tms import VIEW_CHECK_CHUNK, SqlTmsStore
from posp.tms.ic import Aid
from posp.tms.params import ParamValues, Scope
from posp.tms.rollout import RolloutService
from posp.tms.service import TerminalManagement
from tests.registry_clock import MovedClock, count_key_reads, moved_registry_clock
from tests.store.conftest import StoreFactory

BOUND_S = 1.0
PAST_S = 5.0
IDS = ["T0000001", "T0000002", "T0000003"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> MovedClock:
    return moved_registry_clock(monkeypatch)


async def _fingerprints(tms: SqlTmsStore, ids: list[str]) -> dict[str, Any]:
    return {tid: (await tms.management_view(tid)).fingerprint for tid in ids}


async def test_the_bulk_fingerprint_is_the_views_own(factory: StoreFactory) -> None:
    tms = SqlTmsStore(await factory.new())
    await tms.set_group(IDS[0], "g1")
    await tms.set_param_set(Scope.GROUP, "g1", ParamValues(hotline="95516"))
    await tms.set_param_set(Scope.TERMINAL, IDS[1], ParamValues(purchase_cap_minor=100))
    ids = [*IDS, "T-UNKNOWN"]  # one terminal with no TMS row at all
    own = await _fingerprints(tms, ids)
    assert all(fingerprint is not None for fingerprint in own.values())
    assert await tms.view_fingerprints(ids) == own
    many = [f"T{n:07d}" for n in range(VIEW_CHECK_CHUNK + 2)]  # two statements
    assert set(await tms.view_fingerprints(many)) == set(many)


async def _changes(tms: SqlTmsStore) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    service = RolloutService(tms)
    return [
        ("group set", lambda: tms.set_param_set(Scope.GROUP, "g1", ParamValues(hotline="1"))),
        ("own set", lambda: tms.set_param_set(Scope.TERMINAL, IDS[0], ParamValues(hotline="2"))),
        ("group", lambda: tms.set_group(IDS[0], "g1")),
        ("held params", lambda: tms.set_held_params(IDS[0], 77)),
        ("held ic", lambda: tms.set_held_ic(IDS[0], "capk", 5)),
        ("status", lambda: tms.record_status(IDS[0], app_version="V9", identity="A2V9")),
        ("rollout", lambda: service.start("g1", "P8/V2.0.pkg", "V2.0", (100,), 5.0)),
    ]


async def test_every_change_to_a_view_changes_its_fingerprint(factory: StoreFactory) -> None:
    tms = SqlTmsStore(await factory.new())
    for tid in IDS:
        await tms.set_group(tid, "g1")
    for name, change in await _changes(tms):
        before = await tms.view_fingerprints([IDS[0]])
        await change()
        after = await tms.view_fingerprints([IDS[0]])
        assert before != after, name
    unchanged = await tms.view_fingerprints(IDS)
    assert await tms.view_fingerprints(IDS) == unchanged  # no write, no change


async def _management(factory: StoreFactory) -> tuple[TerminalManagement, SqlTmsStore, SqlStore]:
    switch = await factory.new()
    admin = await factory.new()
    for tid in IDS:
        await SqlTmsStore(admin).set_group(tid, "g1")
    management = TerminalManagement(SqlTmsStore(switch), SqlIcStore(switch), max_age_s=BOUND_S)
    for tid in IDS:
        await management.view(tid)
    return management, SqlTmsStore(admin), admin


async def test_unchanged_views_past_the_bound_are_checked_once_not_read_again(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    management, _, _ = await _management(factory)
    cached = [await management.view(tid) for tid in IDS]
    reads = count_key_reads(cast(SqlTmsStore, management.tms).sql_store, monkeypatch)
    clock.ahead_s = PAST_S
    assert [await management.view(tid) for tid in IDS] == cached
    assert reads == ["ic_versions", "tms_view_versions"]  # one check: IC sets and views


async def test_a_view_changed_elsewhere_is_read_again(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    management, admin_tms, _ = await _management(factory)
    assert (await management.view(IDS[0])).caps.purchase_minor is None
    await admin_tms.set_param_set(Scope.TERMINAL, IDS[0], ParamValues(purchase_cap_minor=100_00))
    assert (await management.view(IDS[0])).caps.purchase_minor is None  # within the bound
    reads = count_key_reads(cast(SqlTmsStore, management.tms).sql_store, monkeypatch)
    clock.ahead_s = PAST_S
    fresh = await management.view(IDS[0])
    assert fresh.caps.purchase_minor == 100_00 and fresh.digit == "1"
    assert (await management.view(IDS[1])).caps.purchase_minor is None
    assert reads == ["ic_versions", "tms_view_versions", "tms_view"]


async def test_a_new_ic_set_drops_every_view_checked(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    management, _, admin = await _management(factory)
    before = await management.view(IDS[0])
    await SqlIcStore(admin).put_aid(Aid(aid="A000000333010101", ec_limit_minor=100000))
    reads = count_key_reads(cast(SqlTmsStore, management.tms).sql_store, monkeypatch)
    clock.ahead_s = PAST_S
    after = await management.view(IDS[0])
    assert after.aid_version > before.aid_version
    assert reads == ["ic_versions", "tms_view_versions", "tms_view"]


async def test_a_failed_check_falls_back_to_reading_the_view(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    management, _, _ = await _management(factory)
    store = cast(SqlTmsStore, management.tms).sql_store
    ops = count_key_reads(store, monkeypatch, checks_raise=StoreUnavailable("connection lost"))
    clock.ahead_s = PAST_S
    assert (await management.view(IDS[0])).terminal_id == IDS[0]
    assert ops == ["ic_versions", "tms_view_versions", "tms_view"]
