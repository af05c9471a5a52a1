"""What a hold writes on SQLite: an add to existing counter rows with the expiry
they already have changes their table pages only, not the ``expires_on``
index (SQLite rewrites an index entry whenever an UPDATE sets its column, same
value or not); a later expiry is still written (``sqlite_extend``)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from posp.risk.counters import CounterAdd
from posp.store.risk_counters import sqlite_check_and_add
from posp.store.sqlite import SqliteStore

UNTIL = dt.date(2027, 2, 3)


def adds(count: int, expires_on: dt.date = UNTIL, cap: int | None = None) -> list[CounterAdd]:
    return [
        CounterAdd(f"c:{n:064x}|d|2026-12-03", 100, 1, 0, 5, expires_on, cap) for n in range(count)
    ]


def wal_frames(connection: sqlite3.Connection, work: list[CounterAdd]) -> int:
    """Frames appended to the WAL by one transaction running ``work``."""
    before = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    connection.execute("BEGIN IMMEDIATE")
    assert sqlite_check_and_add(connection, work).applied
    connection.execute("COMMIT")
    after = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(after[1]) - int(before[1])


@pytest.mark.parametrize("cap", [None, 10**9], ids=["uncapped", "capped"])
async def test_an_unchanged_expiry_writes_no_index_page(tmp_path: Path, cap: int | None) -> None:
    """Capped adds (holds) and uncapped ones (releases, refunds) alike: the rows
    are read first, and only a row whose expiry grows gets its index entry moved."""
    path = tmp_path / "c.db"
    store = SqliteStore(path)
    await store.open()  # the migrations: risk_counters and its expires_on index
    await store.close()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal_frames(connection, adds(300))  # rows on several table and index pages
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # One row again, same expiry: its table leaf only (with the index entry
        # rewritten as well it was two pages).
        assert wal_frames(connection, adds(1, cap=cap)) == 1
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # A later expiry: the index entry moves too.
        assert wal_frames(connection, adds(1, UNTIL + dt.timedelta(days=1), cap)) > 1
        expiry = connection.execute(
            "SELECT expires_on FROM risk_counters WHERE counter_key = ?", [adds(1)[0].key]
        ).fetchone()[0]
        assert expiry == (UNTIL + dt.timedelta(days=1)).isoformat()
    finally:
        connection.close()


Layout = Callable[[str], str]


def legacy_key(key: str) -> str:
    """The key as the layout before migration 0033 wrote it (the inverse of
    ``current_key``, for the comparison below)."""
    parts = key.split("|")
    subject = parts[0][2:]
    if key.startswith("m:"):
        return f"m|{subject}|{parts[1]}|{parts[2]}"
    if key.startswith("t:"):
        return f"tf|{subject}|{parts[2]}"
    if parts[1].startswith("t:"):
        terminal = parts[1][2:]
        if parts[2] == "l":
            return f"ctl|{subject}|{terminal}"
        if parts[2] == "m":
            return f"ctm|{subject}|{terminal}|{parts[3]}"
        return f"ct|{subject}|{terminal}|{parts[2]}|{parts[3]}"
    if parts[1].startswith("n"):
        return f"cn{parts[1][1:]}|{subject}|{parts[2]}"
    return f"c|{subject}|{parts[1]}|{parts[2]}"


async def test_a_repeat_purchase_dirties_its_card_page_and_its_merchant_page(
    tmp_path: Path,
) -> None:
    """The default ruleset's hold for a card used on that terminal before: with
    the card's keys (and its card-on-terminal keys) side by side, the
    transaction writes about two table pages, where the layout before wrote one
    per counter family (five)."""
    import random

    from posp.risk.counters import current_key
    from posp.risk.ruleset import load_ruleset
    from tests.risk.factory import inp

    ruleset = load_ruleset()

    def as_is(key: str) -> str:
        return key

    def hold(card: int, terminal: int, minute: int, layout: Layout) -> list[CounterAdd]:
        value = inp(
            amount_minor=1_234,
            card_hash=f"{card:064x}",
            terminal_id=f"{10_000_000 + terminal}",
            local_time=dt.datetime(2026, 12, 3, 10) + dt.timedelta(minutes=minute),
        )
        adds = ruleset.evaluate(value, {}).hold
        return [add._replace(key=layout(add.key)) for add in adds]

    async def pages_per_hold(layout: Layout, name: str) -> list[int]:
        path = tmp_path / f"{name}.db"
        store = SqliteStore(path)
        await store.open()
        await store.close()
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            connection.execute("PRAGMA wal_autocheckpoint = 0")
            pick = random.Random(7)
            used: list[tuple[int, int]] = []
            connection.execute("BEGIN IMMEDIATE")
            for n in range(6_000):  # 2,000 cards on 40 terminals: a multi-level B-tree
                used.append((pick.randrange(2_000), pick.randrange(40)))
                assert sqlite_check_and_add(connection, hold(*used[-1], n // 60, layout)).applied
            connection.execute("COMMIT")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            frames = []
            for n in range(20):
                card, terminal = used[pick.randrange(len(used))]
                frames.append(wal_frames(connection, hold(card, terminal, 100 + n, layout)))
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return frames
        finally:
            connection.close()

    now = await pages_per_hold(as_is, "now")
    before = await pages_per_hold(legacy_key, "before")
    assert all(current_key(legacy_key(add.key)) == add.key for add in hold(1, 1, 0, as_is))
    assert sum(now) / len(now) <= 3.5  # measured 2.7: the card's page(s), the merchant's
    assert sum(before) / len(before) >= sum(now) / len(now) + 1.5  # measured 5.1
