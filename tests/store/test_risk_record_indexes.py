"""Migration 0034: the risk records keep no RRN index of their own (``posp risk
explain`` finds them through the journal's) and index only the flagged ones
(``posp risk flagged``) — two B-tree pages fewer in the commit of a
risk-checked request that flags nothing.  Both queries must find exactly what
they found before, on both stores, on a fresh database and on one upgraded
from before 0034 with records in it."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from posp.store.migrations import load_migrations
from posp.store.postgres import PostgresStore
from posp.store.queries import numbered
from posp.store.risk_records import BY_RRN, FLAGGED, SqlRiskRecords
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

VERSION = 34
DAY = dt.date(2026, 12, 4)
OTHER_DAY = DAY - dt.timedelta(days=1)
#: A record made before the upgrade (risk_records' columns in order), of the
#: journal row OLD_ENTRY: flagged, RRN 000000000777.
OLD_RECORD = (
    900,
    "000000000777",
    TID,
    DAY.isoformat(),
    "v1",
    "flag",
    1,
    '[{"rule_id":"round-amount"}]',
    None,
    None,
    "2026-12-04T01:00:00+00:00",
)
OLD_ENTRY = (
    "INSERT INTO journal (id, terminal_id, merchant_id, batch, trace, txn_type, mti, state,"
    " dedupe, created_at, rrn) VALUES (900, ?, ?, '000001', '000900', 'purchase', '0200',"
    " 'approved', ?, '2026-12-04 01:00:00.000000', '000000000777')"
)
INSERT_OLD_RECORD = "INSERT INTO risk_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


async def _keep(
    records: SqlRiskRecords, entry_id: int, rrn: str, flagged: bool, day: dt.date
) -> None:
    await records.keep(
        entry_id,
        rrn=rrn,
        terminal_id=TID,
        local_day=day,
        ruleset_version="v2",
        outcome="flag" if flagged else "pass",
        flagged=flagged,
        decisions=[{"rule_id": "odd-amount"}] if flagged else [],
        hold=None,
    )


async def _journaled(store: SqlStore, trace: str, rrn: str) -> int:
    return await store.insert_entry(entry(trace, rrn=rrn, state="approved"))


async def records_are_found_as_before(store: SqlStore, *, old_record: bool) -> None:
    """Records of several RRNs, days and flags: ``by_rrn`` returns exactly those
    of the RRN asked for, with their journal entry's fields; ``flagged`` exactly
    the day's flagged ones."""
    records = SqlRiskRecords(store)
    passed = await _journaled(store, "000001", "000000000101")
    flagged = await _journaled(store, "000002", "000000000102")
    yesterday = await _journaled(store, "000003", "000000000103")
    await _journaled(store, "000004", "000000000104")  # journaled without a record
    await _keep(records, passed, "000000000101", False, DAY)
    await _keep(records, flagged, "000000000102", True, DAY)
    await _keep(records, yesterday, "000000000103", True, OTHER_DAY)

    found = await records.by_rrn("000000000102")
    assert [(r.entry_id, r.outcome, r.txn_type, r.state) for r in found] == [
        (flagged, "flag", "purchase", "approved")
    ]
    assert [r.entry_id for r in await records.by_rrn("000000000101")] == [passed]
    assert await records.by_rrn("000000000104") == []  # journaled, no record
    assert await records.by_rrn("999999999999") == []

    listed = {r.entry_id for r in await records.flagged(DAY)}
    expected = {flagged, 900} if old_record else {flagged}
    assert listed == expected
    assert {r.entry_id for r in await records.flagged(OTHER_DAY)} == {yesterday}
    if old_record:
        (old,) = await records.by_rrn("000000000777")
        assert (old.entry_id, old.ruleset_version, old.decisions) == (
            900,
            "v1",
            [{"rule_id": "round-amount"}],
        )


async def test_records_by_rrn_and_flagged_on_a_fresh_store(factory: StoreFactory) -> None:
    store = await factory.new()
    assert isinstance(store, SqliteStore | PostgresStore)
    await records_are_found_as_before(store, old_record=False)


async def test_an_upgraded_sqlite_database_finds_its_old_records(tmp_path: Path) -> None:
    path = tmp_path / "posp.db"
    database_before(
        path,
        VERSION,
        {OLD_ENTRY: [(TID, MID, True)], INSERT_OLD_RECORD: [OLD_RECORD]},
    )
    store = SqliteStore(path)
    await store.open()
    try:
        await records_are_found_as_before(store, old_record=True)
    finally:
        await store.close()
    indexes = sqlite_indexes(path, "risk_records")
    assert set(indexes) == {"risk_records_flagged"}
    assert "WHERE flagged = 1" in indexes["risk_records_flagged"]


@pytest.mark.postgres
async def test_an_upgraded_postgresql_database_finds_its_old_records(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, schema):
        await pg_schema_before(connection, VERSION)
        await connection.execute(numbered(OLD_ENTRY), TID, MID, True)
        await connection.execute(numbered(INSERT_OLD_RECORD), *OLD_RECORD)
        store = PostgresStore(pg_dsn, schema=schema)
        await store.open()
        try:
            await records_are_found_as_before(store, old_record=True)
        finally:
            await store.close()
        indexes = await pg_indexes(connection, schema, "risk_records")
        assert set(indexes) == {"risk_records_pkey", "risk_records_flagged"}
        assert "WHERE (flagged = 1)" in indexes["risk_records_flagged"]


def test_both_queries_use_an_index_on_sqlite(tmp_path: Path) -> None:
    """No scan of the records or the journal: ``by_rrn`` goes through the journal's
    RRN index, ``flagged`` through the partial index of flagged records."""
    path = tmp_path / "posp.db"
    database_before(path, VERSION + 1, {})
    connection = sqlite3.connect(path)
    try:
        plans = {
            name: [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", ["x"])]
            for name, sql in (("by_rrn", BY_RRN), ("flagged", FLAGGED))
        }
    finally:
        connection.close()
    assert any("INDEX journal_rrn" in step for step in plans["by_rrn"]), plans
    assert any("INDEX risk_records_flagged" in step for step in plans["flagged"]), plans
    assert not any(step.startswith("SCAN") for steps in plans.values() for step in steps), plans


def test_both_stores_have_the_migration() -> None:
    sqlite = {m.version: m for m in load_migrations("sqlite")}[VERSION]
    postgres = {m.version: m for m in load_migrations("postgres")}[VERSION]
    assert sqlite.name == postgres.name == "risk_record_indexes"
