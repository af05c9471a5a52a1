"""Two switch instances on one PostgreSQL race on cards near their risk day cap
(100,000.00 by the default ruleset): no card is approved past the cap, and the
card-day counters equal the journal's approved sums afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posp.lab.cardpool import write_card_pool
from posp.store.sql_store import SqlStore
from terminals.cards import TerminalCard, load_cards
from terminals.session import TerminalSession
from tests.scaleout.conftest import ScaleOut, started_scaleout
from tests.stackfixtures import Stack

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CARDS = 50
TERMINALS_PER_INSTANCE = 5
DAY_CAP_MINOR = 10_000_000
SEED_MINOR = (3_000_000, 3_000_000, 3_000_000, 900_000)  # 99,000.00: 1,000.00 left
RACE_MINOR = 1_000  # 10.00: a hundred fit in what is left, the hundred-and-first does not
RACE_PER_CARD = 200  # 10,000 racing purchases on the 50 cards


@pytest.fixture
async def pool_scaleout(tmp_path: Path, pg_url: str) -> AsyncIterator[ScaleOut]:
    """The scale-out stack with a pool of ``CARDS`` lab cards at the issuer."""
    stack = Stack.create(tmp_path, store_url=pg_url)
    stack.cards = load_cards(write_card_pool(tmp_path / "cards.csv", CARDS))
    async with started_scaleout(stack, pg_url) as running:
        yield running


Done = list[tuple[str, int, str | None]]


async def work(session: TerminalSession, queue: asyncio.Queue[tuple[TerminalCard, int]]) -> Done:
    """Purchases from ``queue`` one after another on one terminal: (card, amount, code)."""
    done: Done = []
    while not queue.empty():
        card, amount = queue.get_nowait()
        outcome = await session.transact(lambda m, c=card, a=amount: m.purchase(c, a, pin=c.pin))
        done.append((card.pan, amount, outcome.response_code))
    return done


async def run_all(sessions: list[TerminalSession], jobs: list[tuple[TerminalCard, int]]) -> Done:
    queue: asyncio.Queue[tuple[TerminalCard, int]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    results = await asyncio.gather(*(work(s, queue) for s in sessions))
    return [row for rows in results for row in rows]


async def test_two_instances_never_approve_past_a_card_day_cap(pool_scaleout: ScaleOut) -> None:
    scaleout = pool_scaleout
    sessions = [
        await scaleout.terminal(f"2{side}{n:06d}", switch)
        for side, switch in enumerate((scaleout.a, scaleout.b))
        for n in range(TERMINALS_PER_INSTANCE)
    ]
    cards = scaleout.stack.cards
    seeded = await run_all(sessions, [(c, amount) for amount in SEED_MINOR for c in cards])
    assert {code for _, _, code in seeded} == {"00"}
    race = [(c, RACE_MINOR) for _ in range(RACE_PER_CARD) for c in cards]
    raced = await run_all(sessions, race)
    approved: dict[str, int] = {}
    for pan, amount, code in seeded + raced:
        assert code in ("00", "61"), code
        if code == "00":
            approved[pan] = approved.get(pan, 0) + amount
    assert max(approved.values()) <= DAY_CAP_MINOR
    assert len(raced) == RACE_PER_CARD * CARDS
    assert sum(1 for _, _, code in raced if code == "00") == 100 * CARDS  # no slot left unused
    store = scaleout.stack.store
    assert isinstance(store, SqlStore)
    services = scaleout.a.pipeline.services if scaleout.a.pipeline else None
    assert services is not None
    for card in cards:
        card_hash = services.pan_hash(card.pan)
        counted = await store._read(
            "test_counter",
            "SELECT sum(amount_minor) AS s FROM risk_counters WHERE counter_key LIKE ?",
            [f"c:{card_hash}|d|%"],
        )
        journaled = await store._read(
            "test_journal",
            "SELECT sum(amount_minor) AS s FROM journal WHERE pan_hash = ?"
            " AND state = 'approved' AND txn_type = 'purchase'",
            [card_hash],
        )
        assert int(counted[0]["s"]) == int(journaled[0]["s"]) == approved[card.pan]
