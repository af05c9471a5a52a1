"""Migration 0037 (PostgreSQL): a purchase's outcome write is a HOT update.

PostgreSQL rewrites no index entry for an UPDATE only when no column that an
index names (as a key, in an expression or in its WHERE) changes value.  Since
0037 no index of the journal names a column an outcome changes; the in-doubt
sweeper finds pending entries in ``journal_open`` (filled by the store's insert
statements, emptied by the sweep), and the stranded-reservation and pre-auth
code indexes name generated columns that a purchase leaves false or NULL.

Here: the schema holds that promise, an outcome really is written HOT, every
insert path lists its pending entries, the sweep empties the list of ended
ones, a database upgraded with pending entries, stranded reservations and
pre-auths in it keeps finding them, and (both stores) no write moves an entry
back to pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from posp.errors import ConfigError, StoreError
from posp.risk.counters import CounterAdd
from posp.store import postgres, queries
from posp.store.api import APPROVED, DECLINED, PENDING, SafItem, Store
from posp.store.migrations import load_migrations
from posp.store.postgres import PostgresStore
from posp.store.risk_counters import SqlRiskCounters
from tests.store.conftest import insert_journal_rows, opened, pg_schema_before, scratch_schema
from tests.store.samples import MID, TID, UTC, entry, hold_with_entry, registered

VERSION = 37
#: What a purchase's outcome writes (``posp.pipeline.journal.outcome_changes``
#: and the network ids of the financial steps).  Its RRN is the one it was
#: journaled with, so that column keeps its value.
OUTCOME_COLUMNS = {
    "state",
    "response_code",
    "auth_code",
    "settlement_date",
    "card_org",
    "card_class",
    "network_stan",
    "network_f7",
    "original_id",
}
#: Every column an index of ``journal`` depends on: keys, expressions, WHERE.
INDEXED_COLUMNS = (
    "SELECT DISTINCT a.attname FROM pg_index i"
    " JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid"
    " JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
    " WHERE i.indrelid = 'journal'::regclass AND d.refobjsubid > 0"
)
OUTCOME = (
    "UPDATE journal SET state = 'approved', response_code = '00', auth_code = $2,"
    " settlement_date = '1205', card_org = 'CUP', card_class = '01' WHERE id = $1"
)
#: This backend's counts not yet flushed to the statistics (earlier transactions'
#: too): an outcome write's own is a difference.
UPDATES = (
    "SELECT pg_stat_get_xact_tuples_updated('journal'::regclass) AS updated,"
    " pg_stat_get_xact_tuples_hot_updated('journal'::regclass) AS hot"
)


def _store(dsn: str, schema: str) -> PostgresStore:
    return PostgresStore(dsn, schema=schema, pool_size=4)


async def _migrate(dsn: str, schema: str) -> None:
    """Every migration applied to ``schema`` (a store opened and closed)."""
    async with opened(_store(dsn, schema)):
        pass


@contextlib.asynccontextmanager
async def _registered_store(
    dsn: str,
) -> AsyncIterator[tuple[asyncpg.Connection, PostgresStore]]:
    """A direct connection to a fresh schema and an open store on it that knows
    the sample terminal; both gone afterwards."""
    async with scratch_schema(dsn) as (connection, schema), opened(_store(dsn, schema)) as store:
        await registered(store)
        yield connection, store


async def _listed(connection: asyncpg.Connection) -> list[int]:
    return [int(r["id"]) for r in await connection.fetch("SELECT id FROM journal_open ORDER BY id")]


async def _hot(connection: asyncpg.Connection, entry_id: int, auth_code: str) -> int:
    """How many of one outcome write's row versions PostgreSQL wrote HOT."""
    async with connection.transaction():
        before = await connection.fetchrow(UPDATES)
        await connection.execute(OUTCOME, entry_id, auth_code)
        after = await connection.fetchrow(UPDATES)
    assert after["updated"] - before["updated"] == 1
    return int(after["hot"] - before["hot"])


@pytest.mark.postgres
async def test_no_journal_index_names_a_column_an_outcome_changes(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, schema):
        await _migrate(pg_dsn, schema)
        indexed = {r["attname"] for r in await connection.fetch(INDEXED_COLUMNS)}
        # the query sees keys and WHERE columns alike (0032's index had state in its WHERE)
        assert {"terminal_id", "rrn", "reservation_stranded", "preauth_code"} <= indexed
        assert not indexed & OUTCOME_COLUMNS, indexed & OUTCOME_COLUMNS


@pytest.mark.postgres
async def test_before_0037_the_outcome_was_not_hot_and_now_it_is(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, schema):
        await pg_schema_before(connection, VERSION)
        store = _store(pg_dsn, schema)
        # the store as it was: every migration before 0037 (open() would apply it)
        before = await connection.fetchval(
            "INSERT INTO journal (terminal_id, merchant_id, batch, trace, txn_type, mti, state,"
            " dedupe, created_at, rrn) VALUES ($1, $2, '000001', '000001', 'purchase', '0200',"
            " 'pending', true, now(), '000000000001') RETURNING id",
            TID,
            MID,
        )
        assert await _hot(connection, before, "100001") == 0
        async with opened(store):
            await registered(store)
            entry_id = await store.insert_entry(entry("000002", rrn="000000000002"))
            assert await _hot(connection, entry_id, "100002") == 1
            # a pre-auth's code goes into its index: that outcome is not HOT, and is found
            preauth = await store.insert_entry(entry("000003", txn_type="preauth", mti="0100"))
            assert await _hot(connection, preauth, "100003") == 0
            found = await store.find_preauth(MID, "100003", None, None)
            assert found is not None and found.id == preauth


class _Nothing:
    """Work with an entry's insert that is not a risk hold (runs alone)."""

    def sqlite(self, connection: Any, entry_id: int) -> None:
        pass

    async def postgres(self, connection: Any, entry_id: int) -> None:
        pass


def _hold() -> tuple[CounterAdd, ...]:
    until = dt.date(2026, 12, 31)
    return (CounterAdd("c:x|d|2026-12-03", 100, 1, 0, 1_000, until, max_amount_minor=10**9),)


@pytest.mark.postgres
async def test_every_insert_path_lists_its_pending_entries(pg_dsn: str) -> None:
    async with _registered_store(pg_dsn) as (connection, store):
        alone = await store.insert_entry(entry("000001"))
        # concurrent inserts go out as one statement (the group commit's batch)
        batch = await asyncio.gather(
            *(store.insert_entry(entry(f"{n:06d}")) for n in range(10, 30))
        )
        answered = await store.insert_entry(entry("000002", state=APPROVED))
        with pytest.raises(StoreError):  # a duplicate is refused, and not listed again
            await store.insert_entry(entry("000001"))
        with_work = await store.insert_entry(entry("000003"), then=_Nothing())
        await SqlRiskCounters(store).create_missing(_hold())
        held = await asyncio.gather(  # entries with risk holds: their own batches
            *(
                store.insert_entry(entry(f"{n:06d}"), then=hold_with_entry(_hold()))
                for n in range(40, 50)
            )
        )
        expected = sorted([alone, *batch, with_work, *held])
        assert await _listed(connection) == expected
        assert answered not in expected


def test_every_journal_insert_of_the_postgresql_store_lists_pending_entries() -> None:
    """The statements that insert journal entries (the sweep reads journal_open,
    nothing else): each names the listing CTE; no other statement inserts."""
    inserts = [
        postgres._INSERT_ENTRIES,
        postgres._insert_and_finish_entries(("state",), True),
        queries.INSERT_ENTRY_PG,
    ]
    for sql in inserts:
        assert queries.LIST_PENDING_PG in sql
    assert PostgresStore._insert_entry == queries.INSERT_ENTRY_PG
    folder = Path(postgres.__file__ or "").parent  # every module of posp.store
    sources = [path.read_text() for path in folder.glob("*.py")]
    written = ("INSERT INTO journal ", '_insert("journal"')  # _INSERT_CTES, INSERT_ENTRY
    assert [sum(text.count(text_of) for text in sources) for text_of in written] == [1, 1]


@pytest.mark.postgres
async def test_the_sweep_empties_the_list_of_ended_entries(pg_dsn: str) -> None:
    async with (
        scratch_schema(pg_dsn) as (connection, schema),
        opened(_store(pg_dsn, schema)) as store,
        opened(_store(pg_dsn, schema)) as other,
    ):
        stores = [store, other]
        await registered(store)
        old = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
        ids = [await store.insert_entry(entry(f"{n:06d}", created_at=old)) for n in range(6)]
        for entry_id in ids[:4]:  # answered; ids[4] and ids[5] are in doubt
            assert await store.finish_entry(entry_id, (PENDING,), state=APPROVED)
        assert await store.finish_entry(ids[4], (PENDING,), state=DECLINED)
        cutoff = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
        # two instances sweeping at once: one empties the list, both read it
        found = await asyncio.gather(*(s.in_doubt_entries(cutoff) for s in stores))
        assert [[e.id for e in f] for f in found] == [[ids[5]], [ids[5]]]
        assert await _listed(connection) == [ids[5]]
        assert await store.finish_entry(ids[5], (PENDING,), state=DECLINED)
        assert await store.in_doubt_entries(cutoff) == []
        assert await _listed(connection) == []


@pytest.mark.postgres
async def test_an_upgraded_database_keeps_its_pending_and_stranded_entries(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, schema):
        await pg_schema_before(connection, VERSION)
        columns = ("id", "terminal_id", "merchant_id", "trace", "txn_type", "mti", "state")
        await insert_journal_rows(
            connection,
            (*columns, "dedupe", "reserved_minor", "auth_code"),
            [
                (900, TID, MID, "000900", "purchase", "0200", "pending", True, 0, None),
                (901, TID, MID, "000901", "purchase", "0200", "approved", True, 0, None),
                (902, TID, MID, "000902", "refund", "0200", "declined", True, 500, None),
                (903, TID, MID, "000903", "refund", "0200", "approved", True, 500, None),
                (904, TID, MID, "000904", "preauth", "0200", "approved", True, 0, "C0DE04"),
            ],
            created_at="now() - interval '1 hour'",
        )  # 902: a stranded reservation, 903 its share; 904 an open pre-authorization
        async with opened(_store(pg_dsn, schema)) as store:
            cutoff = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
            assert [e.id for e in await store.in_doubt_entries(cutoff)] == [900]
            assert [e.id for e in await store.stranded_reservations(cutoff)] == [902]
            found = await store.find_preauth(MID, "C0DE04", None, None)
            assert found is not None and found.id == 904
            assert await store.find_preauth(MID, "C0DE05", None, None) is None


async def test_no_write_moves_an_entry_back_to_pending(store: Store) -> None:
    await registered(store)
    entry_id = await store.insert_entry(entry("000001"))
    assert await store.finish_entry(entry_id, (PENDING,), state=DECLINED)
    with pytest.raises(StoreError, match="never goes back to state pending"):
        await store.update_entry(entry_id, state=PENDING)
    with pytest.raises(StoreError, match="never goes back to state pending"):
        await store.transition(entry_id, (DECLINED,), PENDING)
    with pytest.raises(StoreError, match="never goes back to state pending"):
        await store.finish_entry(entry_id, (DECLINED,), state=PENDING)
    assert (await store.get_entry(entry_id)).state == DECLINED  # type: ignore[union-attr]


def test_both_stores_have_the_migration() -> None:
    sqlite = {m.version: m for m in load_migrations("sqlite")}[VERSION]
    postgres = {m.version: m for m in load_migrations("postgres")}[VERSION]
    assert sqlite.name == postgres.name == "hot_outcomes"


def test_no_postgresql_path_inserts_with_the_unlisted_statement() -> None:
    """``q.INSERT_ENTRY`` (SQLite's) would journal a pending entry unlisted."""
    source = Path(postgres.__file__ or "").read_text()
    assert "q.INSERT_ENTRY," not in source and "q.INSERT_ENTRY)" not in source
    assert "q.INSERT_ENTRY\n" not in source


@pytest.mark.postgres
async def test_the_sweep_reads_when_its_housekeeping_fails(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _registered_store(pg_dsn) as (_connection, store):
        old = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
        orphan = await store.insert_entry(entry("000001", created_at=old))
        monkeypatch.setattr(queries, "CLOSE_OPEN_PG", "DELETE FROM no_such_table")
        cutoff = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
        assert [e.id for e in await store.in_doubt_entries(cutoff)] == [orphan]


@pytest.mark.postgres
async def test_a_listed_entry_deleted_by_hand_leaves_the_list(pg_dsn: str) -> None:
    async with _registered_store(pg_dsn) as (connection, store):
        gone = await store.insert_entry(entry("000001"))
        kept = await store.insert_entry(entry("000002"))
        await connection.execute("DELETE FROM journal WHERE id = $1", gone)
        await store.in_doubt_entries(dt.datetime.now(UTC))
        assert await _listed(connection) == [kept]


@pytest.mark.postgres
async def test_generic_plans_use_the_rebuilt_indexes(pg_dsn: str) -> None:
    """The plans prepared statements keep (no parameter value known) still use
    the partial indexes: their WHERE is implied by the queries' own terms."""
    async with scratch_schema(pg_dsn) as (connection, schema):
        await _migrate(pg_dsn, schema)
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute("SET enable_seqscan = off")
        preauth = queries.find_original(
            [queries.PREAUTH_ONLY, "merchant_id = ?", f"{queries.PREAUTH_CODE_PG} = ?"]
        )
        stranded = queries.STRANDED_RESERVATIONS.format(stranded=queries.STRANDED_PG, after="")
        for name, sql, index in (
            ("preauth", preauth, "journal_preauth_code"),
            ("stranded", stranded, "journal_stranded_reservations"),
        ):
            await connection.execute(f"PREPARE {name} AS {queries.numbered(sql)}")
            arguments = "('m', 'c')" if name == "preauth" else "(now(), 10)"
            plan = "\n".join(
                r[0] for r in await connection.fetch(f"EXPLAIN EXECUTE {name}{arguments}")
            )
            assert index in plan, plan


def test_the_store_url_bounds_a_migration() -> None:
    store = PostgresStore.from_url("postgresql://u@h/db?migrate_timeout_s=7200&pool_size=3")
    assert store._migrate_timeout_s == 7200.0 and store.pool_size == 3
    assert "migrate_timeout_s" not in store.dsn
    assert PostgresStore.from_url("postgresql://u@h/db")._migrate_timeout_s == 3600.0
    for bad in ("x", "0", "-1"):
        with pytest.raises(ConfigError, match="migrate_timeout_s"):
            PostgresStore.from_url(f"postgresql://u@h/db?migrate_timeout_s={bad}")


async def test_reverse_and_queue_refuses_pending_too(store: Store) -> None:
    await registered(store)
    entry_id = await store.insert_entry(entry("000001"))
    with pytest.raises(StoreError, match="never goes back to state pending"):
        await store.reverse_and_queue(entry_id, (PENDING,), PENDING, SafItem(entry_id, b"r"))
    assert await store.saf_depth() == 0
