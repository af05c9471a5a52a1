"""Fixtures for the store contract suite: every test runs against a fresh
SqliteStore (a file under tmp_path) and a fresh PostgresStore (a schema of its
own, dropped afterwards; skipped with a message when PostgreSQL is absent)."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from posp.store.api import Store
from posp.store.migrations import CREATE_TABLE_SQL, load_migrations
from posp.store.postgres import PostgresStore
from posp.store.sqlite import SqliteStore

S = TypeVar("S", SqliteStore, PostgresStore)


class StoreFactory:
    """Opens any number of stores on ONE database (a second switch instance, or
    the same instance after a restart) and closes them all at teardown."""

    def __init__(self, kind: str, *, path: Path | None = None, dsn: str = "", schema: str = ""):
        self.kind = kind
        self.path = path
        self.dsn = dsn
        self.schema = schema
        self.opened: list[Store] = []

    def make(self, **options: object) -> SqliteStore | PostgresStore:
        """A store object on the shared database, not yet opened."""
        if self.kind == "sqlite":
            assert self.path is not None
            return SqliteStore(self.path, **options)  # type: ignore[arg-type]
        return PostgresStore(self.dsn, schema=self.schema, pool_size=4, **options)  # type: ignore[arg-type]

    async def new(self, **options: object) -> SqliteStore | PostgresStore:
        store = self.make(**options)
        await store.open()
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


@contextlib.asynccontextmanager
async def opened(store: S) -> AsyncIterator[S]:
    """``store`` opened (migrations applied) for the block, closed afterwards."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def scratch_schema(dsn: str) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    """A connection whose search_path is a new, empty schema, and the schema's
    name; the schema and everything in it are dropped afterwards."""
    schema = f"t_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        await connection.execute(f'SET search_path TO "{schema}"')
        yield connection, schema
    finally:
        await connection.close()
        await drop_schema(dsn, schema)


async def pg_schema_before(connection: asyncpg.Connection, version: int) -> None:
    """Apply (and record) every PostgreSQL migration before ``version`` on the
    connection's search_path: a database as an older release left it."""
    await connection.execute(CREATE_TABLE_SQL)
    for migration in load_migrations("postgres"):
        if migration.version >= version:
            break
        await connection.execute(migration.sql)
        await connection.execute(
            "INSERT INTO schema_migrations VALUES ($1, $2, $3)",
            migration.version,
            migration.name,
            "2026-12-01T00:00:00",
        )


async def insert_journal_rows(
    connection: asyncpg.Connection,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    created_at: str = "now()",
) -> None:
    """Journal entries written straight into the table, as an older release left
    them: ``columns``' values per row, batch 000001 and ``created_at`` (SQL)."""
    names = ", ".join((*columns, "batch", "created_at"))
    values = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    await connection.executemany(
        f"INSERT INTO journal ({names}) VALUES ({values}, '000001', {created_at})", rows
    )


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop a test's PostgreSQL schema and everything in it (from inside a loop)."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Where the stores of one test live.  Synchronous on purpose: the shared
    pg_dsn fixture probes with asyncio.run, which cannot run inside the loop."""
    if request.param == "sqlite":
        return StoreFactory("sqlite", path=tmp_path / "data" / "posp.db")
    dsn: str = request.getfixturevalue("pg_dsn")
    return StoreFactory("postgres", dsn=dsn, schema=f"t_{secrets.token_hex(6)}")


@pytest.fixture
async def factory(target: StoreFactory) -> AsyncIterator[StoreFactory]:
    """A StoreFactory whose stores are closed (and PostgreSQL schema dropped) afterwards."""
    try:
        yield target
    finally:
        await target.close_all()
        if target.kind == "postgres":
            await drop_schema(target.dsn, target.schema)


@pytest.fixture
async def store(factory: StoreFactory) -> SqliteStore | PostgresStore:
    """A fresh, open store (either implementation)."""
    return await factory.new()


def sqlite_indexes(path: Path, table: str) -> dict[str, str]:
    """Name -> CREATE statement of ``table``'s explicit indexes in a SQLite file."""
    connection = sqlite3.connect(path)
    try:
        found = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name = ? AND type = 'index'"
            " AND sql IS NOT NULL",
            [table],
        ).fetchall()
    finally:
        connection.close()
    return dict(found)


async def pg_indexes(connection: asyncpg.Connection, schema: str, table: str) -> dict[str, str]:
    """Name -> definition of ``table``'s indexes in a PostgreSQL schema."""
    found = await connection.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 AND schemaname = $2",
        table,
        schema,
    )
    return {row["indexname"]: row["indexdef"] for row in found}
