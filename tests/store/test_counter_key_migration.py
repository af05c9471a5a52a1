"""Migration 0033 rewrites the stored velocity counters' keys to the current
layout (``posp.risk.facts``) by the rules of ``posp.risk.counters.current_key``:
on SQLite for any set of keys (property test), on both stores for every shape,
the edge cases and 2,000 generated keys; and an upgraded database, on either
store, counts on from where it was and gives back a hold kept before."""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import string
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from posp.pipeline.risk import check_counter_layout, open_risk
from posp.risk.counters import CounterAdd, current_key
from posp.risk.engine import release
from posp.settings import load_settings
from posp.store.migrations import load_migrations
from posp.store.postgres import PostgresStore
from posp.store.queries import numbered
from posp.store.risk_counters import SqlRiskCounters
from posp.store.risk_records import SqlRiskRecords
from posp.store.sqlite import SqliteStore
from tests.store.conftest import pg_schema_before, scratch_schema
from tests.store.test_sqlite_counter_migration import database_before

VERSION = 33
MIGRATION = {m.version: m for m in load_migrations("sqlite")}[VERSION]
PG_MIGRATION = {m.version: m for m in load_migrations("postgres")}[VERSION]
TABLE = (
    "CREATE TABLE risk_counters (counter_key TEXT PRIMARY KEY, amount_minor INTEGER NOT NULL,"
    " txn_count INTEGER NOT NULL DEFAULT 0, refunded_minor INTEGER NOT NULL DEFAULT 0,"
    " last_at_s INTEGER NOT NULL DEFAULT 0, expires_on TEXT NOT NULL DEFAULT '2027-01-01')"
)

part = st.text(alphabet=string.ascii_letters + string.digits + "-:", max_size=12)
legacy_keys = st.one_of(
    st.builds(lambda h, w, d: f"c|{h}|{w}|{d}", part, st.sampled_from("dw"), part),
    st.builds(lambda m, w, d: f"m|{m}|{w}|{d}", part, st.sampled_from("dw"), part),
    st.builds(lambda h, t, w, d: f"ct|{h}|{t}|{w}|{d}", part, part, st.sampled_from("dw"), part),
    st.builds(lambda h, t: f"ctl|{h}|{t}", part, part),
    st.builds(lambda h, t, m: f"ctm|{h}|{t}|{m}", part, part, part),
    st.builds(lambda t, d: f"tf|{t}|{d}", part, part),
    st.builds(
        lambda label, h, d: f"cn{label}|{h}|{d}",
        st.text(alphabet=string.digits, min_size=8, max_size=8),
        part,
        part,
    ),
)
#: Keys of any shape: near misses of the old layout, current keys, noise.
other_keys = st.text(alphabet="cmtnlfd|:0129٢C", max_size=24)

#: Every shape and edge case, for PostgreSQL (one schema, one run).
EXAMPLES = [
    "c|a1b2|d|2026-12-03",
    "c|a1b2|w|2026W49",
    "m|898290054110001|d|2026-12-03",
    "m|898290054110001|w|2026W49",
    "ct|a1b2|10000001|d|2026-12-03",
    "ct|a1b2|10000001|w|2026W49",
    "ctl|a1b2|10000001",
    "ctm|a1b2|10000001|202612",
    "tf|10000001|2026-12-03",
    "cn09002100|a1b2|2026-12-03",
    "c||d|",
    "ctl||",
    "ctm|||",
    "c|x|d",
    "c|x|d|2026-12-03|extra",
    "C|x|d|2026-12-03",
    "ct|x|d|2026-12-03",
    "ctl|x",
    "cn0900210|x|2026-12-03",
    "cn09002100x|x|2026-12-03",
    "cn0900٢100|x|2026-12-03",
    "c:a1b2|d|2026-12-04",
    "m:898290054110001|d|2026-12-04",
    "odd",
]


def migrated_sqlite(keys: list[str]) -> dict[str, str]:
    """Each key as migration 0033 leaves it (SQLite, in memory)."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    try:
        connection.execute(TABLE)
        connection.executemany(
            "INSERT INTO risk_counters (counter_key, amount_minor) VALUES (?, ?)",
            [(key, index) for index, key in enumerate(keys)],
        )
        connection.execute("BEGIN")
        for statement in MIGRATION.statements():
            connection.execute(statement)
        connection.execute("COMMIT")
        rows = connection.execute("SELECT amount_minor, counter_key FROM risk_counters").fetchall()
    finally:
        connection.close()
    return {keys[index]: key for index, key in rows}


def distinct_after(keys: list[str]) -> bool:
    """No two keys of the set meet after translation (a stored database never
    holds a key of the current layout before 0033, so this is the real case)."""
    return len({current_key(key) for key in keys}) == len(keys)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(legacy_keys, other_keys), unique=True, max_size=20))
def test_the_sqlite_migration_is_current_key(keys: list[str]) -> None:
    assume(distinct_after(keys))
    assert migrated_sqlite(keys) == {key: current_key(key) for key in keys}


def test_the_examples_on_sqlite() -> None:
    assert distinct_after(EXAMPLES)
    migrated = migrated_sqlite(EXAMPLES)
    assert migrated == {key: current_key(key) for key in EXAMPLES}
    assert migrated["ctm|a1b2|10000001|202612"] == "c:a1b2|t:10000001|m|202612"
    assert migrated["cn09002100|a1b2|2026-12-03"] == "c:a1b2|n09002100|2026-12-03"


def generated_keys(count: int, seed: int) -> list[str]:
    """``count`` keys of every old shape and of none, from a fixed seed: the same
    mix as the property test's, for a store that is checked in one round trip."""
    pick = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "-:|%_\\٢é"

    def part() -> str:
        return "".join(pick.choice(alphabet) for _ in range(pick.randrange(0, 10)))

    shapes = [
        lambda: f"c|{part()}|{pick.choice('dw')}|{part()}",
        lambda: f"m|{part()}|{pick.choice('dw')}|{part()}",
        lambda: f"ct|{part()}|{part()}|{pick.choice('dw')}|{part()}",
        lambda: f"ctl|{part()}|{part()}",
        lambda: f"ctm|{part()}|{part()}|{part()}",
        lambda: f"tf|{part()}|{part()}",
        lambda: f"cn{pick.randrange(10**8):08d}|{part()}|{part()}",
        part,
    ]
    keys: dict[str, None] = {}
    while len(keys) < count:
        key = pick.choice(shapes)()
        if key not in keys and distinct_after([*keys, key]):
            keys[key] = None
    return list(keys)


@pytest.mark.postgres
async def test_the_postgresql_migration_is_current_key(pg_dsn: str) -> None:
    keys = EXAMPLES + [k for k in generated_keys(2_000, seed=33) if k not in EXAMPLES]
    assert distinct_after(keys)
    async with scratch_schema(pg_dsn) as (connection, _schema):
        await connection.execute(TABLE)
        await connection.executemany(
            "INSERT INTO risk_counters (counter_key, amount_minor) VALUES ($1, $2)",
            [(key, index) for index, key in enumerate(keys)],
        )
        async with connection.transaction():
            await connection.execute(PG_MIGRATION.sql)
        rows = await connection.fetch("SELECT amount_minor, counter_key FROM risk_counters")
    assert {keys[r["amount_minor"]]: r["counter_key"] for r in rows} == {
        key: current_key(key) for key in keys
    }


def test_the_generated_keys_on_sqlite() -> None:
    keys = generated_keys(2_000, seed=33)
    assert migrated_sqlite(keys) == {key: current_key(key) for key in keys}


#: What the older release left: a card's day counter and its last use on a
#: terminal, and the record of a purchase's hold on them (entry 7), old keys.
OLD_COUNTERS = [
    ("c|a1b2|d|2026-12-03", 9_000_000, 3, 0, 100, "2027-02-03"),
    ("ctl|a1b2|10000001", 0, 3, 0, 100, "2027-02-03"),
]
OLD_HOLD = json.dumps(
    [
        ["c|a1b2|d|2026-12-03", 500, 1, 0, 100, "2027-02-03"],
        ["ctl|a1b2|10000001", 0, 1, 0, 100, "2027-02-03"],
    ]
)
OLD_RECORD = (
    7,
    "000000000007",
    "10000001",
    "2026-12-03",
    "v1",
    "pass",
    0,
    "[]",
    OLD_HOLD,
    None,
    "x",
)
INSERT_RECORD = "INSERT INTO risk_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
DAY, LAST = "c:a1b2|d|2026-12-03", "c:a1b2|t:10000001|l"


async def counts_on(store: SqliteStore | PostgresStore) -> None:
    """The old totals under the new keys, a cap counting them, and the old hold
    given back to them (a card's day does not start again from zero)."""
    counters, records = SqlRiskCounters(store), SqlRiskRecords(store)
    values = await counters.snapshot([DAY, LAST])
    assert {k: tuple(v) for k, v in values.items()} == {
        DAY: (9_000_000, 3, 0, 100),
        LAST: (0, 3, 0, 100),
    }
    until = dt.date(2027, 2, 3)
    over = CounterAdd(DAY, 1_000_001, 1, 0, 200, until, max_amount_minor=10_000_000)
    assert not (await counters.check_and_add([over])).applied  # the cap counts the old total
    assert (await counters.check_and_add([over._replace(amount_minor=1_000_000)])).applied
    hold = await records.take_hold(7)  # a void of the purchase held before the upgrade
    assert [add.key for add in hold] == [DAY, LAST]
    await counters.apply(release(hold))
    values = await counters.snapshot([DAY, LAST])
    assert tuple(values[DAY]) == (9_999_500, 3, 0, 200)  # + 1,000,000, − the old 500
    assert tuple(values[LAST]) == (0, 2, 0, 100)
    assert await records.take_hold(7) == ()  # given back once


async def test_an_upgraded_sqlite_database_counts_on_from_where_it_was(tmp_path: Path) -> None:
    path = tmp_path / "posp.db"
    counters = "INSERT INTO risk_counters VALUES (?, ?, ?, ?, ?, ?)"
    database_before(path, VERSION, {counters: OLD_COUNTERS, INSERT_RECORD: [OLD_RECORD]})
    store = SqliteStore(path)
    await store.open()
    try:
        await counts_on(store)
        applied = await store._read("migrations", "SELECT version FROM schema_migrations")
        assert VERSION in {row[0] for row in applied}
    finally:
        await store.close()


@pytest.mark.postgres
async def test_an_upgraded_postgresql_database_counts_on_from_where_it_was(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, schema):
        await pg_schema_before(connection, VERSION)
        await connection.executemany(
            numbered("INSERT INTO risk_counters VALUES (?, ?, ?, ?, ?, ?)"), OLD_COUNTERS
        )
        await connection.execute(numbered(INSERT_RECORD), *OLD_RECORD)
        store = PostgresStore(pg_dsn, schema=schema)
        await store.open()
        try:
            await counts_on(store)
        finally:
            await store.close()


def test_both_stores_have_the_migration() -> None:
    assert MIGRATION.name == PG_MIGRATION.name == "risk_counter_keys"


async def test_counters_written_by_an_older_version_after_the_upgrade_are_reported(
    store: SqliteStore | PostgresStore,
) -> None:
    """An older switch left running after 0033 keeps counting under the old keys,
    apart from this version's: the switch's purge task finds such rows, logs an
    error naming the fix and shows their number in a gauge; none, no error."""
    registry = CollectorRegistry()
    service = open_risk(load_settings(), store, registry)
    assert service is not None
    until = dt.date(2027, 2, 3)
    await service.counters.apply([CounterAdd("c:a1b2|d|2026-12-03", 500, 1, 0, 100, until)])
    with capture_logs() as logs:
        assert await check_counter_layout(service) == 0
    assert not [log for log in logs if log["log_level"] == "error"]
    assert registry.get_sample_value("posp_risk_legacy_counter_rows") == 0
    old = ["c|a1b2|d|2026-12-03", "ctl|a1b2|10000001", "m|898290054110001|w|2026W49"]
    await service.counters.apply([CounterAdd(key, 500, 1, 0, 100, until) for key in old])
    with capture_logs() as logs:
        assert await check_counter_layout(service) == 3
    (error,) = [log for log in logs if log["log_level"] == "error"]
    assert "older posp version" in error["event"] and error["rows"] == 3
    assert registry.get_sample_value("posp_risk_legacy_counter_rows") == 3
    assert await service.counters.legacy_rows(limit=2) == 2
