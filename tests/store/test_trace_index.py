"""Migration 0038 (PostgreSQL): one index for an entry's (terminal, batch, trace).

``journal_dedupe`` (unique, WHERE dedupe) and ``journal_batch`` held the same
leading columns, and each insert wrote an entry into both.  One unique index,
``journal_trace``, replaces them: its last key is 0 for a deduplicated entry
and NULL (never conflicting) for the others.

Here: the schema has it and not the two it replaces; a database upgraded with
entries in it (duplicate traces among the entries that are not deduplicated
included) keeps refusing a second deduplicated request on every insert path
and keeps accepting repeated management entries; the trace and batch lookups
can use the index, also as generic plans (sequential scans priced out, so
that the test's near-empty table does not decide the plan).
"""

from __future__ import annotations

import asyncio

import pytest

from posp.errors import DuplicateTransaction
from posp.store import queries
from posp.store.migrations import load_migrations
from posp.store.postgres import PostgresStore
from tests.store.conftest import insert_journal_rows, opened, pg_schema_before, scratch_schema
from tests.store.samples import MID, TID, entry, registered

VERSION = 38
JOURNAL_INDEXES = (
    "SELECT indexname FROM pg_indexes"
    " WHERE schemaname = current_schema() AND tablename = 'journal' ORDER BY 1"
)


def _store(dsn: str, schema: str) -> PostgresStore:
    return PostgresStore(dsn, schema=schema, pool_size=4)


def test_both_stores_have_the_migration() -> None:
    sqlite = {m.version: m for m in load_migrations("sqlite")}[VERSION]
    postgres = {m.version: m for m in load_migrations("postgres")}[VERSION]
    assert sqlite.name == postgres.name == "one_trace_index"


@pytest.mark.postgres
async def test_one_unique_index_replaces_the_dedupe_and_batch_indexes(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, schema):
        async with opened(_store(pg_dsn, schema)):
            pass
        names = [r["indexname"] for r in await connection.fetch(JOURNAL_INDEXES)]
        assert "journal_trace" in names
        assert "journal_dedupe" not in names and "journal_batch" not in names
        unique = await connection.fetchval(
            "SELECT indisunique FROM pg_index WHERE indexrelid = 'journal_trace'::regclass"
        )
        assert unique is True


@pytest.mark.postgres
async def test_an_upgraded_database_keeps_refusing_duplicates(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, schema):
        await pg_schema_before(connection, VERSION)
        await insert_journal_rows(
            connection,
            ("id", "terminal_id", "merchant_id", "trace", "txn_type", "mti", "state", "dedupe"),
            [
                (900, TID, MID, "000900", "purchase", "0200", "approved", True),
                # management entries repeat a trace: not deduplicated, never conflicting
                (901, TID, MID, "000901", "sign_in", "0800", "approved", False),
                (902, TID, MID, "000901", "sign_in", "0800", "approved", False),
            ],
        )
        async with opened(_store(pg_dsn, schema)) as store:
            await registered(store)
            # a lone insert, and one of a batch with another request
            with pytest.raises(DuplicateTransaction):
                await store.insert_entry(entry("000900"))
            results = await asyncio.gather(
                store.insert_entry(entry("000900")),
                store.insert_entry(entry("000903")),
                return_exceptions=True,
            )
            assert isinstance(results[0], DuplicateTransaction)
            assert isinstance(results[1], int)
            again = await store.insert_entry(entry("000901", txn_type="sign_in"), dedupe=False)
            assert again not in (900, 901, 902)
            found = await store.find_by_trace(TID, "000001", "000900")
            assert found is not None and found.id == 900
            listed = {e.id for e in await store.list_entries(TID, "000001")}
            assert {900, 901, 902, again} <= listed


@pytest.mark.postgres
async def test_the_trace_and_batch_lookups_use_the_index(pg_dsn: str) -> None:
    """As prepared statements keep them (generic plans, no value known)."""
    async with scratch_schema(pg_dsn) as (connection, schema):
        async with opened(_store(pg_dsn, schema)):
            pass
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute("SET enable_seqscan = off")
        for name, sql, arguments in (
            ("by_trace", queries.FIND_BY_TRACE, "('t', 'b', 'n', 'original')"),
            ("debit_or_credit", queries.FIND_DEBIT_OR_CREDIT, "('t', 'b', 'n')"),
            ("totals", queries.BATCH_TOTALS, "('t', 'b')"),
            ("entries", queries.LIST_ENTRIES, "('t', 'b')"),
        ):
            await connection.execute(f"PREPARE {name} AS {queries.numbered(sql)}")
            plan = "\n".join(
                r[0] for r in await connection.fetch(f"EXPLAIN EXECUTE {name}{arguments}")
            )
            assert "journal_trace" in plan, (name, plan)
