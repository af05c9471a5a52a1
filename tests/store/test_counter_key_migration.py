"""Migration 0033 rewrites the stored velocity counters' keys to the current
layout (``posp.risk.facts``) by the rules of ``posp.risk.counters.current_key``:
on SQLite for any set of keys (property test), on PostgreSQL for every shape
and edge case; and an upgraded database counts on from where it was."""

from __future__ import annotations

import datetime as dt
import sqlite3
import string
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from posp.risk.counters import CounterAdd, current_key
from posp.store.migrations import load_migrations
from posp.store.risk_counters import SqlRiskCounters
from posp.store.sqlite import SqliteStore
from tests.store.conftest import scratch_schema
from tests.store.test_sqlite_counter_migration import schema_before

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


@settings(max_examples=200)
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


@pytest.mark.postgres
async def test_the_examples_on_postgresql(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, _schema):
        await connection.execute(TABLE)
        await connection.executemany(
            "INSERT INTO risk_counters (counter_key, amount_minor) VALUES ($1, $2)",
            [(key, index) for index, key in enumerate(EXAMPLES)],
        )
        async with connection.transaction():
            await connection.execute(PG_MIGRATION.sql)
        rows = await connection.fetch("SELECT amount_minor, counter_key FROM risk_counters")
    assert {EXAMPLES[r["amount_minor"]]: r["counter_key"] for r in rows} == {
        key: current_key(key) for key in EXAMPLES
    }


async def test_an_upgraded_database_counts_on_from_where_it_was(tmp_path: Path) -> None:
    """Counters kept before 0033 are found under their new keys, and a hold adds
    to them (a card's day total does not start again from zero at the upgrade)."""
    path = tmp_path / "posp.db"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        schema_before(connection, VERSION)
        connection.executemany(
            "INSERT INTO risk_counters VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("c|a1b2|d|2026-12-03", 9_000_000, 3, 0, 100, "2027-02-03"),
                ("ctl|a1b2|10000001", 0, 3, 0, 100, "2027-02-03"),
            ],
        )
    finally:
        connection.close()
    store = SqliteStore(path)
    await store.open()
    try:
        counters = SqlRiskCounters(store)
        day, last = "c:a1b2|d|2026-12-03", "c:a1b2|t:10000001|l"
        assert {k: tuple(v) for k, v in (await counters.snapshot([day, last])).items()} == {
            day: (9_000_000, 3, 0, 100),
            last: (0, 3, 0, 100),
        }
        until = dt.date(2027, 2, 3)
        over = CounterAdd(day, 1_000_001, 1, 0, 200, until, max_amount_minor=10_000_000)
        assert not (await counters.check_and_add([over])).applied  # the cap counts the old total
        assert (await counters.check_and_add([over._replace(amount_minor=1_000_000)])).applied
        assert tuple((await counters.snapshot([day]))[day]) == (10_000_000, 4, 0, 200)
        applied = await store._read("migrations", "SELECT version FROM schema_migrations")
        assert VERSION in {row[0] for row in applied}
    finally:
        await store.close()


def test_both_stores_have_the_migration() -> None:
    assert MIGRATION.name == PG_MIGRATION.name == "risk_counter_keys"
