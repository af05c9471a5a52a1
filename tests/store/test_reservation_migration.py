"""Migration 0032 adds ``journal.reserved_minor``: refunds approved before it
carry their share of their original from then on, so the original's
``refunded_minor`` equals what its entries carry on an upgraded database too."""

from __future__ import annotations

from pathlib import Path

import pytest

from posp.store.postgres import PostgresStore
from posp.store.queries import numbered
from posp.store.sqlite import SqliteStore
from tests.store.conftest import opened, pg_schema_before, scratch_schema
from tests.store.test_sqlite_counter_migration import database_before

_INSERT = (
    "INSERT INTO journal (id, terminal_id, merchant_id, batch, trace, txn_type, mti,"
    " state, amount_minor, original_id, refunded_minor, dedupe, created_at)"
    " VALUES (?, '10000001', '898290054110001', '000001', ?, ?, ?, ?, ?, ?, ?, TRUE,"
    " '2026-12-01T00:00:00+00:00')"
)

#: A purchase refunded 300 + 400 (approved) and a declined refund of 200.
ROWS = [
    (1, "000001", "purchase", "0200", "approved", 1000, None, 700),
    (2, "000002", "refund", "0220", "approved", 300, 1, 0),
    (3, "000003", "refund", "0220", "approved", 400, 1, 0),
    (4, "000004", "refund", "0220", "declined", 200, 1, 0),
]


async def test_approved_refunds_from_before_carry_their_share(tmp_path: Path) -> None:
    path = tmp_path / "posp.db"
    database_before(path, 32, {_INSERT: ROWS})
    async with opened(SqliteStore(path)) as store:
        carried = [(await store.get_entry(i)).reserved_minor for i in (1, 2, 3, 4)]  # type: ignore[union-attr]
        assert carried == [0, 300, 400, 0]
        assert await store.release_reservation(2, 300) is True  # releasable like new ones
        assert (await store.get_entry(1)).refunded_minor == 400  # type: ignore[union-attr]


@pytest.mark.postgres
async def test_approved_refunds_from_before_carry_their_share_on_postgresql(pg_dsn: str) -> None:
    async with scratch_schema(pg_dsn) as (connection, schema):
        await pg_schema_before(connection, 32)
        await connection.executemany(
            numbered(_INSERT).replace("'2026-12-01T00:00:00+00:00'", "now()"), ROWS
        )
        async with opened(PostgresStore(pg_dsn, schema=schema)) as store:
            carried = [(await store.get_entry(i)).reserved_minor for i in (1, 2, 3, 4)]  # type: ignore[union-attr]
            assert carried == [0, 300, 400, 0]
            assert await store.release_reservation(2, 300) is True
            assert (await store.get_entry(1)).refunded_minor == 400  # type: ignore[union-attr]
