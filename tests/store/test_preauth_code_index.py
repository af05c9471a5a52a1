"""Migration 0035: the auth-code index holds the pre-authorizations only
(``journal_preauth_code``), so a purchase's outcome write no longer adds an
entry to it — with issuers' auth codes in no order, that entry was one more
B-tree page per purchase.  ``find_preauth`` must find exactly what it found
before, on both stores, on a fresh database and on one upgraded from before
0035 with entries in it, and must use the new index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from posp.store.migrations import load_migrations
from posp.store.postgres import PostgresStore
from posp.store.queries import PREAUTH_ONLY, find_original, numbered
from posp.store.sql_store import SqlStore
from posp.store.sqlite import SqliteStore
from tests.store.conftest import (
    StoreFactory,
    pg_indexes,
    pg_schema_before,
    scratch_schema,
    sqlite_indexes,
)
from tests.store.samples import MID, TID, entry
from tests.store.test_sqlite_counter_migration import database_before

VERSION = 35
CODE = "A1B2C3"
#: Entries journaled before the upgrade: an approved pre-auth (id 900) and an
#: approved purchase with the same merchant and auth code (id 901).
OLD_ENTRY = (
    "INSERT INTO journal (id, terminal_id, merchant_id, batch, trace, txn_type, mti, state,"
    " dedupe, created_at, auth_code, amount_minor, pan_hash)"
    " VALUES (?, ?, ?, '000001', ?, ?, ?, 'approved', ?, '2026-12-04 01:00:00.000000', ?,"
    " 5000, 'h1')"
)
OLD_ROWS = [
    (900, TID, MID, "000900", "preauth", "0100", True, CODE),
    (901, TID, MID, "000901", "purchase", "0200", True, CODE),
]
#: find_preauth's statement as the store builds it (merchant and code only:
#: ``SqlStore._find_original`` with the fixed ``PREAUTH_ONLY``).
FIND_PREAUTH = find_original([PREAUTH_ONLY, "merchant_id = ?", "auth_code = ?", "state = ?"])


async def preauths_are_found_as_before(store: SqlStore, *, old: bool) -> None:
    """An approved pre-auth is found by merchant, code and card, whether it was
    journaled pending and then approved (its outcome moves it into the index) or
    approved at once; a purchase or a pending pre-auth with the same code never
    is; of two approved pre-auths with one code the later one wins, as before."""
    purchase = await store.insert_entry(entry("000002", state="approved", auth_code="777777"))
    assert await store.find_preauth(MID, "777777", None, None) is None
    pending = await store.insert_entry(entry("000003", txn_type="preauth", mti="0100"))
    assert await store.find_preauth(MID, "888888", None, None) is None
    assert await store.finish_entry(
        pending, ("pending",), state="approved", response_code="00", auth_code="888888"
    )
    found = await store.find_preauth(MID, "888888", None, "h1")
    assert found is not None and found.id == pending and found.txn_type == "preauth"
    still_pending = await store.insert_entry(
        entry("000004", txn_type="preauth", mti="0100", auth_code="999999")
    )
    assert await store.find_preauth(MID, "999999", None, None) is None
    earlier = await store.insert_entry(
        entry("000005", txn_type="preauth", mti="0100", state="approved", auth_code="999999")
    )
    later = await store.insert_entry(
        entry("000006", txn_type="preauth", mti="0100", state="approved", auth_code="999999")
    )
    found = await store.find_preauth(MID, "999999", None, "h1")
    assert found is not None and found.id == later
    assert await store.find_preauth(MID, "999999", None, "other card") is None
    assert await store.find_preauth("898100000000002", "999999", None, None) is None
    assert len({purchase, pending, still_pending, earlier, later}) == 5
    if old:
        got = await store.find_preauth(MID, CODE, None, "h1")
        assert got is not None and got.id == 900  # the pre-auth, not the purchase 901


async def test_preauths_on_a_fresh_store(factory: StoreFactory) -> None:
    store = await factory.new()
    assert isinstance(store, SqliteStore | PostgresStore)
    await preauths_are_found_as_before(store, old=False)


async def test_an_upgraded_sqlite_database_finds_its_old_preauths(tmp_path: Path) -> None:
    path = tmp_path / "posp.db"
    database_before(path, VERSION, {OLD_ENTRY: OLD_ROWS})
    store = SqliteStore(path)
    await store.open()
    try:
        await preauths_are_found_as_before(store, old=True)
    finally:
        await store.close()
    indexes = sqlite_indexes(path, "journal")
    assert "journal_auth_code" not in indexes
    assert "WHERE txn_type = 'preauth' AND auth_code IS NOT NULL" in indexes["journal_preauth_code"]


@pytest.mark.postgres
async def test_an_upgraded_postgresql_database_finds_its_old_preauths(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, schema):
        await pg_schema_before(connection, VERSION)
        await connection.executemany(numbered(OLD_ENTRY), OLD_ROWS)
        store = PostgresStore(pg_dsn, schema=schema)
        await store.open()
        try:
            await preauths_are_found_as_before(store, old=True)
        finally:
            await store.close()
        indexes = await pg_indexes(connection, schema, "journal")
        assert "journal_auth_code" not in indexes
        # Migration 0037 then moved the index onto a generated copy of the code
        # kept for pre-authorizations only (tests/store/test_hot_outcomes.py).
        definition = indexes["journal_preauth_code"]
        assert "(merchant_id, preauth_code) WHERE (preauth_code IS NOT NULL)" in definition


def test_find_preauth_uses_the_index_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "posp.db"
    database_before(path, VERSION + 1, {})
    connection = sqlite3.connect(path)
    try:
        plan = [
            row[3]
            for row in connection.execute(f"EXPLAIN QUERY PLAN {FIND_PREAUTH}", [MID, CODE, "x"])
        ]
    finally:
        connection.close()
    assert any("INDEX journal_preauth_code" in step for step in plan), plan
    assert not any(step.startswith("SCAN journal") for step in plan), plan


@pytest.mark.postgres
async def test_find_preauth_uses_the_index_in_a_generic_plan_on_postgresql(pg_dsn: str) -> None:
    """The plan a prepared statement keeps (generic: no parameter values known)
    can use the partial index, because the type test is a literal."""
    async with scratch_schema(pg_dsn) as (connection, _schema):
        await pg_schema_before(connection, VERSION + 1)
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute("SET enable_seqscan = off")
        await connection.execute(f"PREPARE find_preauth AS {numbered(FIND_PREAUTH)}")
        rows = await connection.fetch(f"EXPLAIN EXECUTE find_preauth('{MID}', '{CODE}', 'x')")
        plan = "\n".join(row[0] for row in rows)
        assert "journal_preauth_code" in plan, plan


def test_both_stores_have_the_migration() -> None:
    sqlite = {m.version: m for m in load_migrations("sqlite")}[VERSION]
    postgres = {m.version: m for m in load_migrations("postgres")}[VERSION]
    assert sqlite.name == postgres.name == "preauth_code_index"
    assert sqlite.statements() == postgres.statements()
