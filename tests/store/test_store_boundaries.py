"""Store behaviour outside the shared contract: URL parsing, error translation,
the SQLite writer's group commit and in-memory mode, migrations bookkeeping."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from posp.errors import ConfigError, DuplicateTransaction, StoreError, StoreUnavailable
from posp.store import open_store
from posp.store.api import JournalEntry, Merchant
from posp.store.migrations import load_migrations
from posp.store.postgres import PostgresStore
from posp.store.sqlite import SqliteStore


def purchase(trace: str) -> JournalEntry:
    return JournalEntry("10000001", "898100000000001", "000001", trace, "purchase", "0200")


def test_open_store_picks_the_implementation_from_the_url(tmp_path: Path) -> None:
    sqlite_store = open_store(f"sqlite:///{tmp_path}/posp.db", node_id="n1")
    assert isinstance(sqlite_store, SqliteStore) and sqlite_store.node_id == "n1"
    assert sqlite_store.path == f"{tmp_path}/posp.db"
    pg = open_store("postgres://u@127.0.0.1:5432/db?pool_size=3&schema=posp_a&sslmode=disable")
    assert isinstance(pg, PostgresStore)
    assert (pg.pool_size, pg.schema) == (3, "posp_a")
    assert pg.dsn == "postgres://u@127.0.0.1:5432/db?sslmode=disable"


@pytest.mark.parametrize(
    "url",
    ["mysql://x", "sqlite:///", "postgresql://h/db?pool_size=x", "postgresql://h/db?schema=A;"],
)
def test_open_store_rejects_bad_urls_with_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url)


async def test_in_memory_store_works_through_one_connection() -> None:
    store = open_store("sqlite:///:memory:")
    await store.open()
    try:
        entry_id = await store.insert_entry(purchase("000001"))
        assert (await store.get_entry(entry_id)) is not None
        assert await store.next_sequence("rrn") == 1
    finally:
        await store.close()


async def test_a_closed_or_unopened_store_raises_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.db")
    with pytest.raises(StoreError, match="not open"):
        await store.get_merchant("m")
    await store.open()
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(StoreError):
        await store.insert_entry(purchase("000001"))


async def test_one_failing_write_in_a_group_does_not_undo_the_others(tmp_path: Path) -> None:
    """Duplicates queued among fresh inserts share a group commit; only they fail."""
    store = SqliteStore(tmp_path / "x.db")
    await store.open()
    try:
        traces = [f"{n % 50:06d}" for n in range(100)]  # each trace twice
        outcomes = await asyncio.gather(
            *(store.insert_entry(purchase(t)) for t in traces), return_exceptions=True
        )
        assert sum(isinstance(o, int) for o in outcomes) == 50
        assert sum(isinstance(o, DuplicateTransaction) for o in outcomes) == 50
        for trace in set(traces):
            assert await store.find_by_trace("10000001", "000001", trace) is not None
    finally:
        await store.close()


async def test_sqlite_file_is_in_wal_mode_with_migrations_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "data" / "posp.db"
    for _ in range(2):
        store = SqliteStore(path)
        await store.open()
        await store.close()
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [r[0] for r in connection.execute("SELECT version FROM schema_migrations")]
    finally:
        connection.close()
    assert versions == [m.version for m in load_migrations("sqlite")]


async def test_sqlite_path_that_cannot_be_opened_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError):
        await SqliteStore(blocker / "posp.db").open()


async def test_unreachable_postgresql_raises_store_unavailable() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout_s=1.0)
    with pytest.raises(StoreUnavailable):
        await store.open()


@pytest.mark.postgres
async def test_postgres_migrations_are_recorded_once(pg_dsn: str) -> None:
    import asyncpg

    schema = "t_migrations_once"
    for _ in range(2):
        store = PostgresStore(pg_dsn, schema=schema, pool_size=1)
        await store.open()
        await store.add_merchant(Merchant(f"m{_}", "x", "5411"))
        await store.close()
    connection = await asyncpg.connect(pg_dsn)
    try:
        rows = await connection.fetch(f"SELECT version FROM {schema}.schema_migrations")
        await connection.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await connection.close()
    assert [r["version"] for r in rows] == [m.version for m in load_migrations("postgres")]
