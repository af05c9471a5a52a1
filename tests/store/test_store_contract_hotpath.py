"""The store contract, part 3: what the switch's hot path relies on — the
one-statement outcome (``finish_entry``) and cached registry reads
(``max_age_s``).  Every test runs against SqliteStore and PostgresStore."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from posp.errors import StoreError
from posp.store.api import APPROVED, DECLINED, PENDING, REVERSED, Store
from posp.store.registry_cache import RegistryCache
from tests.store.conftest import StoreFactory
from tests.store.samples import MID, TID, UTC, entry, registered

LONG_S = 60.0  # a staleness bound no test outlives

# --- finish_entry ------------------------------------------------------------------


async def test_finish_entry_sets_state_and_outcome_in_one_change(store: Store) -> None:
    await registered(store)
    entry_id = await store.insert_entry(entry("000101"))
    won = await store.finish_entry(
        entry_id, (PENDING,), state=APPROVED, response_code="00", auth_code="A1", rrn="01X"
    )
    got = await store.get_entry(entry_id)
    assert won is True and got is not None
    assert (got.state, got.response_code, got.auth_code, got.rrn) == (APPROVED, "00", "A1", "01X")


async def test_finish_entry_from_another_state_writes_nothing(store: Store) -> None:
    await registered(store)
    entry_id = await store.insert_entry(entry("000102"))
    assert await store.transition(entry_id, (PENDING,), REVERSED)
    won = await store.finish_entry(entry_id, (PENDING,), state=APPROVED, response_code="00")
    got = await store.get_entry(entry_id)
    assert won is False and got is not None
    assert (got.state, got.response_code) == (REVERSED, None)


async def test_finish_entry_is_exactly_once_under_concurrency(factory: StoreFactory) -> None:
    """8 concurrent outcomes over two instances: one wins and only its columns stay."""
    first, second = await factory.new(), await factory.new()
    await registered(first)
    entry_id = await first.insert_entry(entry("000103"))
    attempts = [
        store.finish_entry(entry_id, (PENDING,), state=DECLINED, response_code=f"{n:02d}")
        for n, store in enumerate([first, second] * 4)
    ]
    won = await asyncio.gather(*attempts)
    assert won.count(True) == 1
    got = await first.get_entry(entry_id)
    assert got is not None and got.response_code == f"{won.index(True):02d}"


async def test_finish_entry_needs_a_state_and_known_fields(store: Store) -> None:
    await registered(store)
    entry_id = await store.insert_entry(entry("000104"))
    with pytest.raises(StoreError):
        await store.finish_entry(entry_id, (PENDING,), response_code="00")
    with pytest.raises(StoreError, match="not updatable"):
        await store.finish_entry(entry_id, (PENDING,), state=APPROVED, pan="6225")
    with pytest.raises(StoreError):
        await store.finish_entry(entry_id, (), state=APPROVED)
    assert (await store.get_entry(entry_id)).state == PENDING  # type: ignore[union-attr]


# --- cached registry reads ------------------------------------------------------------


async def test_cached_read_may_be_stale_within_the_bound_but_not_with_zero(
    factory: StoreFactory,
) -> None:
    switch, admin = await factory.new(), await factory.new()
    await registered(admin)
    assert (await switch.get_terminal(TID, max_age_s=LONG_S)).status == "active"  # type: ignore[union-attr]
    assert (await switch.get_merchant(MID, max_age_s=LONG_S)).status == "active"  # type: ignore[union-attr]
    await admin.set_terminal_status(TID, "disabled")
    await admin.set_merchant_status(MID, "disabled")
    assert (await switch.get_terminal(TID, max_age_s=LONG_S)).status == "active"  # type: ignore[union-attr]
    assert (await switch.get_terminal(TID)).status == "disabled"  # type: ignore[union-attr]
    assert (await switch.get_merchant(MID)).status == "disabled"  # type: ignore[union-attr]


async def test_a_cached_row_expires_after_max_age(factory: StoreFactory) -> None:
    switch, admin = await factory.new(), await factory.new()
    await registered(admin)
    await switch.get_terminal(TID, max_age_s=0.05)
    await admin.set_terminal_status(TID, "disabled")
    await asyncio.sleep(0.1)
    assert (await switch.get_terminal(TID, max_age_s=0.05)).status == "disabled"  # type: ignore[union-attr]


async def test_changes_through_the_same_instance_are_seen_at_once(store: Store) -> None:
    await registered(store)
    generated = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    async def cached() -> tuple[object, ...]:
        t = await store.get_terminal(TID, max_age_s=LONG_S)
        m = await store.get_merchant(MID, max_age_s=LONG_S)
        assert t is not None and m is not None
        return (t.status, t.tak_lmk, t.tmk_kcv, t.batch, m.status)

    await cached()
    await store.set_working_keys(TID, "U" + "1" * 32, "U" + "2" * 32, None, generated)
    assert (await cached())[1] == "U" + "2" * 32
    await store.clear_working_keys(TID)
    assert (await cached())[1] is None
    await store.close_batch(TID, "000001", "000002")
    assert (await cached())[3] == "000002"
    await store.set_terminal_tmk(TID, "U" + "3" * 32, "ABCDEF")
    assert (await cached())[2] == "ABCDEF"
    await store.set_terminal_status(TID, "disabled")
    await store.set_merchant_status(MID, "disabled")
    assert (await cached())[0] == "disabled" and (await cached())[4] == "disabled"


async def test_an_absent_row_is_not_cached(factory: StoreFactory) -> None:
    switch, admin = await factory.new(), await factory.new()
    assert await switch.get_merchant(MID, max_age_s=LONG_S) is None
    assert await switch.get_terminal(TID, max_age_s=LONG_S) is None
    await registered(admin)
    assert await switch.get_merchant(MID, max_age_s=LONG_S) is not None
    assert await switch.get_terminal(TID, max_age_s=LONG_S) is not None


def test_a_read_that_started_before_a_change_does_not_fill_the_cache() -> None:
    cache: RegistryCache[str] = RegistryCache()
    generation = cache.generation
    cache.forget("t1")  # a write committed while the read was in flight
    cache.put("t1", "old row", generation, read_started_s=time.monotonic())
    assert cache.get("t1", LONG_S) is None
    cache.put("t1", "new row", cache.generation, read_started_s=time.monotonic())
    assert cache.get("t1", LONG_S) == "new row"
