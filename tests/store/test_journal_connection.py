"""The PostgreSQL journal's held connection (``PostgresStore._journal_fetch``).

The journal's group commit keeps one connection of the keyed pool while its
batches follow one another, instead of an acquire and a release of the pool
per statement, and gives it back when its queue runs dry.  Here: statements in
a row share one connection and one acquire; a part that runs beside another
takes its own; after a failed statement, a connection lost while held and at
close, the connection goes back to the pool and the next statement works; and
the journal's writes give it back once they are done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from posp.errors import StoreError, StoreUnavailable
from posp.store.api import APPROVED, PENDING
from posp.store.postgres import PostgresStore
from tests.store.conftest import opened, scratch_schema
from tests.store.samples import entry, registered

pytestmark = pytest.mark.postgres

PID = "SELECT pg_backend_pid() AS pid"
LOCK_KEY = 918_273


class CountingAcquire:
    """Counts one pool's acquisitions (patched on the class: a pool's attributes
    are read-only)."""

    def __init__(self, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        acquire = asyncpg.Pool.acquire

        def counted(this: asyncpg.Pool, *args: Any, **kwargs: Any) -> Any:
            if this is pool:
                self.calls += 1
            return acquire(this, *args, **kwargs)

        monkeypatch.setattr(asyncpg.Pool, "acquire", counted)


@contextlib.asynccontextmanager
async def _store(dsn: str) -> AsyncIterator[tuple[asyncpg.Connection, PostgresStore]]:
    async with (
        scratch_schema(dsn) as (connection, schema),
        opened(PostgresStore(dsn, schema=schema, pool_size=4)) as store,
    ):
        yield connection, store


async def _pid(store: PostgresStore) -> int:
    return int((await store._journal_fetch("test", PID, []))[0]["pid"])


def _all_idle(store: PostgresStore) -> bool:
    pool = store._keyed_pool
    assert pool is not None
    return bool(pool.get_idle_size() == pool.get_size())


async def test_statements_in_a_row_share_one_connection_and_one_acquire(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _store(pg_dsn) as (_connection, store):
        assert store._keyed_pool is not None
        counting = CountingAcquire(store._keyed_pool, monkeypatch)
        pids = {await _pid(store) for _ in range(5)}
        assert len(pids) == 1 and counting.calls == 1
        assert not _all_idle(store)  # held between the statements
        await store._release_held()
        assert store._held is None and _all_idle(store)


async def test_a_part_beside_the_held_one_takes_its_own_connection(pg_dsn: str) -> None:
    async with _store(pg_dsn) as (connection, store):
        held_pid = await _pid(store)
        # the held connection's next statement waits for a lock this test holds
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            blocked = asyncio.create_task(
                store._journal_fetch("test", f"SELECT pg_advisory_xact_lock({LOCK_KEY}), 1", [])
            )
            await asyncio.sleep(0)  # one turn: the task sends its statement and waits
            assert store._held_busy and not blocked.done()  # it cannot end before the lock
            beside = await _pid(store)  # runs while the held connection is busy
            assert beside != held_pid
        await blocked
        assert await _pid(store) == held_pid  # the held one is kept


async def test_a_failed_statement_gives_the_connection_back(pg_dsn: str) -> None:
    async with _store(pg_dsn) as (_connection, store):
        await _pid(store)
        with pytest.raises(StoreError, match="test: database error 22012"):
            await store._journal_fetch("test", "SELECT 1 / 0", [])
        assert store._held is None and _all_idle(store)
        assert await _pid(store) > 0  # the next statement takes one again


async def test_a_connection_lost_while_held_is_replaced(pg_dsn: str) -> None:
    """Its end seen by the driver before the next statement (the pool has then
    taken it back itself): the next statement runs on a new connection."""
    async with _store(pg_dsn) as (connection, store):
        held_pid = await _pid(store)
        held = store._held
        assert held is not None
        ended = asyncio.Event()
        held.add_termination_listener(lambda _connection: ended.set())
        await connection.execute("SELECT pg_terminate_backend($1)", held_pid)
        await ended.wait()
        assert await _pid(store) != held_pid
        assert store._held is not held


async def test_a_connection_lost_just_before_a_statement_fails_it_as_unavailable(
    pg_dsn: str,
) -> None:
    """Its end not yet read when the next statement goes: that statement fails as
    a lost connection does (StoreUnavailable, nothing written), or runs on a new
    connection if the end was read meanwhile; the one after runs either way."""
    async with _store(pg_dsn) as (connection, store):
        held_pid = await _pid(store)
        await connection.execute("SELECT pg_terminate_backend($1)", held_pid)
        try:
            found = await _pid(store)
        except StoreUnavailable:
            assert store._held is None  # given back: the pool replaces it
            found = await _pid(store)
        assert found != held_pid


async def test_journal_writes_give_the_connection_back_when_done(pg_dsn: str) -> None:
    async with _store(pg_dsn) as (_connection, store):
        await registered(store)
        ids = await asyncio.gather(*(store.insert_entry(entry(f"{n:06d}")) for n in range(1, 30)))
        await asyncio.gather(
            *(store.finish_entry(i, (PENDING,), state=APPROVED, response_code="00") for i in ids)
        )
        writer = store._journal._writer
        if writer is not None:  # giving it back, after the last callers were answered
            await asyncio.shield(writer)
        assert store._held is None and _all_idle(store)
        assert store._journal.batches < 2 * len(ids)  # the batches did group


async def test_close_gives_back_a_held_connection(pg_dsn: str) -> None:
    async with _store(pg_dsn) as (_connection, store):
        await _pid(store)
        keyed = store._keyed_pool
        assert keyed is not None and store._held is not None
    assert store._held is None and keyed.is_closing()
