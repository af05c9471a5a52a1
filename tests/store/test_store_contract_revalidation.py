"""The store contract, cached registry rows checked in bulk (migration 0036):
every change to a terminal's or merchant's row bumps its ``row_version``, and a
cached row past its bound is checked with one query for all such rows instead
of being read again: an unchanged row is served on, a changed one is read
afresh.  Every test runs against SqliteStore and PostgresStore; the cache's
clock is moved forward instead of waited for."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from posp.errors import StoreUnavailable
from posp.store.api import Merchant, Terminal
from posp.store.postgres import PostgresStore
from posp.store.registry_cache import CHECK_IDLE_AFTER_S
from posp.store.sql_store import REVALIDATE_CHUNK, SqlStore
from posp.store.sqlite import SqliteStore
from tests.registry_clock import MovedClock, count_key_reads, moved_registry_clock
from tests.store.conftest import StoreFactory, opened, pg_schema_before, scratch_schema
from tests.store.samples import MID, TID, registered
from tests.store.test_sqlite_counter_migration import database_before

BOUND_S = 1.0
PAST_S = 5.0  # the clock moved past BOUND_S


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> MovedClock:
    return moved_registry_clock(monkeypatch)


async def version(store: SqlStore, table: str, column: str, key: str) -> int:
    row = await store._key_read(
        "version", f"SELECT row_version FROM {table} WHERE {column} = ?", [key]
    )
    assert row is not None
    return int(row["row_version"])


async def test_every_change_to_a_registry_row_bumps_its_version(factory: StoreFactory) -> None:
    store = await registered(await factory.new())
    assert isinstance(store, SqlStore)
    seen = [await version(store, "terminals", "terminal_id", TID)]
    await store.set_terminal_status(TID, "disabled")
    seen.append(await version(store, "terminals", "terminal_id", TID))
    await store.set_terminal_tmk(TID, "U" + "1" * 32, "ABCDEF")
    seen.append(await version(store, "terminals", "terminal_id", TID))
    await store.set_working_keys(TID, "U" + "2" * 32, "U" + "3" * 32, None, dt.datetime.now(dt.UTC))
    seen.append(await version(store, "terminals", "terminal_id", TID))
    await store.clear_working_keys(TID)
    seen.append(await version(store, "terminals", "terminal_id", TID))
    assert await store.close_batch(TID, "000001", "000002")
    seen.append(await version(store, "terminals", "terminal_id", TID))
    assert seen == [0, 1, 2, 3, 4, 5]
    before = await version(store, "merchants", "merchant_id", MID)
    await store.set_merchant_status(MID, "disabled")
    assert await version(store, "merchants", "merchant_id", MID) == before + 1


async def two_cached(factory: StoreFactory) -> SqliteStore | PostgresStore:
    """A switch's store holding two terminals' rows, cached now."""
    admin = await registered(await factory.new())
    await admin.add_terminal(Terminal("10000002", MID))
    switch = await factory.new()
    for terminal_id in (TID, "10000002"):
        assert await switch.get_terminal(terminal_id, max_age_s=BOUND_S) is not None
    return switch


async def test_unchanged_rows_past_the_bound_are_checked_once_not_read_again(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = await two_cached(factory)
    assert await switch.get_merchant(MID, max_age_s=BOUND_S) is not None
    reads = count_key_reads(switch, monkeypatch)
    clock.ahead_s = PAST_S
    first = await switch.get_terminal(TID, max_age_s=BOUND_S)
    second = await switch.get_terminal("10000002", max_age_s=BOUND_S)
    merchant = await switch.get_merchant(MID, max_age_s=BOUND_S)
    assert first is not None and first.terminal_id == TID and first.status == "active"
    assert second is not None and second.terminal_id == "10000002"
    assert merchant is not None and merchant.merchant_id == MID
    assert reads == ["terminals_versions", "merchants_versions"]  # no row read again


async def test_a_row_changed_elsewhere_is_read_again_after_the_check(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await registered(await factory.new())
    switch = await factory.new()
    assert (await switch.get_terminal(TID, max_age_s=BOUND_S)).status == "active"  # type: ignore[union-attr]
    assert (await switch.get_merchant(MID, max_age_s=BOUND_S)).status == "active"  # type: ignore[union-attr]
    await admin.set_terminal_status(TID, "disabled")
    await admin.set_merchant_status(MID, "disabled")
    # within the bound the cached rows are served, as before
    assert (await switch.get_terminal(TID, max_age_s=BOUND_S)).status == "active"  # type: ignore[union-attr]
    reads = count_key_reads(switch, monkeypatch)
    clock.ahead_s = PAST_S
    assert (await switch.get_terminal(TID, max_age_s=BOUND_S)).status == "disabled"  # type: ignore[union-attr]
    assert (await switch.get_merchant(MID, max_age_s=BOUND_S)).status == "disabled"  # type: ignore[union-attr]
    assert reads == ["terminals_versions", "get_terminal", "merchants_versions", "get_merchant"]


async def test_concurrent_callers_share_one_check(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await registered(await factory.new())
    ids = [TID, *(f"1000010{n}" for n in range(5))]
    for terminal_id in ids[1:]:
        await admin.add_terminal(Terminal(terminal_id, MID))
    switch = await factory.new()
    for terminal_id in ids:
        await switch.get_terminal(terminal_id, max_age_s=BOUND_S)
    reads = count_key_reads(switch, monkeypatch)
    clock.ahead_s = PAST_S
    found = await asyncio.gather(*(switch.get_terminal(t, max_age_s=BOUND_S) for t in ids))
    assert [t.terminal_id for t in found if t is not None] == ids
    assert reads == ["terminals_versions"]


async def test_more_rows_than_one_check_holds_take_one_check_each_chunk(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await registered(await factory.new())
    ids = [f"2{n:07d}" for n in range(REVALIDATE_CHUNK + 3)]
    for terminal_id in ids:
        await admin.add_terminal(Terminal(terminal_id, MID))
    switch = await factory.new()
    for terminal_id in ids:
        await switch.get_terminal(terminal_id, max_age_s=BOUND_S)
    await admin.set_terminal_status(ids[-1], "disabled")  # in the second chunk
    reads = count_key_reads(switch, monkeypatch)
    clock.ahead_s = PAST_S
    for terminal_id in ids[:-1]:
        assert (await switch.get_terminal(terminal_id, max_age_s=BOUND_S)).status == "active"  # type: ignore[union-attr]
    assert (await switch.get_terminal(ids[-1], max_age_s=BOUND_S)).status == "disabled"  # type: ignore[union-attr]
    assert reads == ["terminals_versions", "terminals_versions", "get_terminal"]


async def test_a_failed_check_falls_back_to_reading_the_row(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await registered(await factory.new())
    switch = await factory.new()
    await switch.get_terminal(TID, max_age_s=BOUND_S)
    await admin.set_terminal_status(TID, "disabled")
    ops = count_key_reads(switch, monkeypatch, checks_raise=StoreUnavailable("connection lost"))
    clock.ahead_s = PAST_S
    assert (await switch.get_terminal(TID, max_age_s=BOUND_S)).status == "disabled"  # type: ignore[union-attr]
    assert ops == ["terminals_versions", "get_terminal"]


async def test_zero_still_reads_the_row_every_time(
    factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = await registered(await factory.new())
    assert isinstance(switch, SqlStore)
    await switch.get_terminal(TID, max_age_s=BOUND_S)
    reads = count_key_reads(switch, monkeypatch)
    await switch.get_terminal(TID)
    await switch.get_terminal(TID, max_age_s=0.0)
    assert reads == ["get_terminal", "get_terminal"]


# --- the migration on a database with rows ---------------------------------------

OLD_TERMINAL = (
    "INSERT INTO terminals (terminal_id, merchant_id, status, batch, created_at)"
    " VALUES (?, ?, 'active', '000001', '2026-12-01 00:00:00.000000')"
)
OLD_MERCHANT = (
    "INSERT INTO merchants (merchant_id, name, category_code, status, created_at)"
    " VALUES (?, 'Old shop', '5411', 'active', '2026-12-01 00:00:00.000000')"
)


async def _upgraded_rows_work(store: SqlStore) -> None:
    assert await version(store, "terminals", "terminal_id", TID) == 0
    assert await version(store, "merchants", "merchant_id", MID) == 0
    await store.set_terminal_status(TID, "disabled")
    await store.set_merchant_status(MID, "disabled")
    assert await version(store, "terminals", "terminal_id", TID) == 1
    assert await version(store, "merchants", "merchant_id", MID) == 1
    await store.add_merchant(Merchant("898100000000002", "New shop", "5411"))
    assert await version(store, "merchants", "merchant_id", "898100000000002") == 0


async def test_sqlite_rows_from_before_0036_get_versions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    database_before(path, 36, {OLD_MERCHANT: [(MID,)], OLD_TERMINAL: [(TID, MID)]})
    async with opened(SqliteStore(path)) as store:
        await _upgraded_rows_work(store)


@pytest.mark.postgres
async def test_postgres_rows_from_before_0036_get_versions(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, schema):
        await pg_schema_before(connection, 36)
        await connection.execute(
            "INSERT INTO merchants (merchant_id, name, category_code, status, created_at)"
            " VALUES ($1, 'Old shop', '5411', 'active', now())",
            MID,
        )
        await connection.execute(
            "INSERT INTO terminals (terminal_id, merchant_id, status, batch, created_at)"
            " VALUES ($1, $2, 'active', '000001', now())",
            TID,
            MID,
        )
        async with opened(PostgresStore(pg_dsn, schema=schema, pool_size=2)) as store:
            await _upgraded_rows_work(store)


# --- what a check looks at, and who waits for it ---------------------------------


async def test_rows_idle_past_the_bound_are_dropped_not_checked(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = await two_cached(factory)
    clock.ahead_s = CHECK_IDLE_AFTER_S - 1.0
    await switch.get_terminal(TID, max_age_s=BOUND_S)  # checked, asked for again now
    reads = count_key_reads(switch, monkeypatch)
    clock.ahead_s = CHECK_IDLE_AFTER_S + 5.0  # 10000002 not asked for since its read
    assert await switch.get_terminal(TID, max_age_s=BOUND_S) is not None
    assert reads == ["terminals_versions"]
    assert await switch.get_terminal("10000002", max_age_s=BOUND_S) is not None
    assert reads == ["terminals_versions", "get_terminal"]  # dropped as idle: read


async def test_a_row_outside_the_check_under_way_is_read_at_once(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await registered(await factory.new())
    switch = await factory.new()
    await switch.get_terminal(TID, max_age_s=BOUND_S)
    clock.ahead_s = PAST_S
    started, release = asyncio.Event(), asyncio.Event()
    original = switch._key_rows
    ops: list[str] = []

    async def held(op: str, sql: str, params: Any = ()) -> list[Any]:
        ops.append(op)
        if op == "terminals_versions":
            started.set()
            await release.wait()
        return await original(op, sql, params)

    monkeypatch.setattr(switch, "_key_rows", held)
    checking = asyncio.ensure_future(switch.get_terminal(TID, max_age_s=BOUND_S))
    await started.wait()  # the check has started and waits
    await admin.add_terminal(Terminal("10000003", MID))
    fresh = await switch.get_terminal("10000003", max_age_s=BOUND_S)  # not cached yet
    await switch.get_terminal("10000003", max_age_s=BOUND_S)  # cached now
    clock.ahead_s = PAST_S * 2  # past its bound too, but not in the check under way
    assert await switch.get_terminal("10000003", max_age_s=BOUND_S) == fresh
    assert ops == ["terminals_versions", "get_terminal", "get_terminal"]
    release.set()
    assert (await checking) is not None


async def test_an_unexpected_error_in_a_check_falls_back_to_the_read(
    factory: StoreFactory, clock: MovedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = await registered(await factory.new())
    assert isinstance(switch, SqlStore)
    await switch.get_terminal(TID, max_age_s=BOUND_S)
    count_key_reads(switch, monkeypatch, checks_raise=RuntimeError("a bug in the check"))
    clock.ahead_s = PAST_S
    found = await asyncio.gather(*(switch.get_terminal(TID, max_age_s=BOUND_S) for _ in range(3)))
    assert [t.terminal_id for t in found if t is not None] == [TID] * 3
