"""The risk race of ``tests/scaleout/test_risk_race.py`` with a crash: two
``posp serve`` processes on one PostgreSQL, purchases on 50 cards near their
100,000.00 card-day cap (default ruleset) from terminals on both, one instance
``kill -9``-ed mid-run and restarted on the same port.  Once the in-doubt sweeper
has resolved what the dead instance left pending (polled: nothing pending, no
0420 undelivered): no card's approved purchases exceed the cap, and each card's
day counters equal the journal's approved sums (every hold of a request that did
not end approved was given back, once)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from posp.lab.cardpool import write_card_pool
from terminals.cards import TerminalCard, load_cards
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from terminals.outcome import Event, Outcome
from terminals.session import SessionOptions, TerminalSession
from tests.faults.audit import connect_store_schema, wait_switch_settled
from tests.faults.driver import RETRY_PAUSE_S
from tests.faults.procs import FaultStack

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CARDS = 50
TERMINALS = 10  # half on each instance
DAY_CAP_MINOR = 10_000_000
SEED_MINOR = (3_000_000, 3_000_000, 3_000_000, 900_000)  # 99,000.00: 1,000.00 left
RACE_MINOR = 1_000  # 10.00: a hundred fit in what is left, the hundred-and-first does not
RACE_PER_CARD = 200  # 10,000 racing purchases on the 50 cards
KILL_AFTER = 3_000  # race purchases settled before the kill
SETTLE_TIMEOUT_S = 90.0

Job = tuple[TerminalCard, int]
Done = list[tuple[str, int, Outcome]]


async def work(session: TerminalSession, queue: asyncio.Queue[Job], done: Done) -> None:
    """Purchases from ``queue`` one after another on one terminal."""
    while not queue.empty():
        card, amount = queue.get_nowait()

        def build(machine: TerminalMachine, c: TerminalCard = card, a: int = amount) -> bytes:
            return machine.purchase(c, a, pin=c.pin)

        outcome = await session.transact(build)
        done.append((card.pan, amount, outcome))
        if outcome.event is Event.COMMS_ERROR:
            await asyncio.sleep(RETRY_PAUSE_S)  # its switch is down: pace the retries


async def run_all(sessions: list[TerminalSession], jobs: list[Job], done: Done) -> None:
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    await asyncio.gather(*(work(s, queue, done) for s in sessions))


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Return once ``condition()`` holds (polled), or fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def clear_reversals(sessions: list[TerminalSession], timeout_s: float) -> None:
    """Every terminal sends its pending reversal until a 0410 clears it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    for session in sessions:
        while session.machine.reversal_due:
            assert loop.time() < deadline, "a terminal's reversal was never answered"
            blocking = await session.prepare()
            if blocking is not None and session.machine.reversal_due:
                await asyncio.sleep(RETRY_PAUSE_S)


async def read_sums(store_url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per card hash: the journal's approved purchase amounts, and the card-day
    counters' amounts (every day)."""
    conn = await connect_store_schema(store_url)
    try:
        journaled = {
            str(r[0]): int(r[1])
            for r in await conn.fetch(
                "SELECT pan_hash, sum(amount_minor) FROM journal"
                " WHERE state = 'approved' AND txn_type = 'purchase' GROUP BY pan_hash"
            )
        }
        counted: dict[str, int] = {}
        for key, amount in await conn.fetch(
            "SELECT counter_key, amount_minor FROM risk_counters WHERE counter_key LIKE 'c:%|d|%'"
        ):
            parts = str(key).split("|")
            if parts[1] != "d":  # a card-on-terminal key (c:<card>|t:<terminal>|d|…)
                continue
            card_hash = parts[0].removeprefix("c:")
            counted[card_hash] = counted.get(card_hash, 0) + int(amount)
        return journaled, counted
    finally:
        await conn.close()


async def test_two_instances_one_killed_never_approve_past_a_cap(
    tmp_path: Path, pg_url: str, stacks: list[FaultStack]
) -> None:
    stack = FaultStack(tmp_path, store_url=pg_url, switch_count=2)
    stacks.append(stack)
    cards = load_cards(write_card_pool(tmp_path / "cards.csv", CARDS))  # the issuer's file
    stack.start_issuer()
    for name in stack.switch_names:
        stack.start_switch(name)
    sessions = [
        TerminalSession(
            TerminalMachine(TerminalConfig(t.terminal_id, t.merchant_id, t.tmk)),
            SessionOptions(
                port=stack.ports[stack.switch_names[i % 2]],
                connect_timeout_s=2.0,
                response_timeout_s=15.0,
                long_connection=True,
            ),
        )
        for i, t in enumerate(stack.provision(TERMINALS))
    ]
    try:
        seeded: Done = []
        await run_all(sessions, [(c, amount) for amount in SEED_MINOR for c in cards], seeded)
        assert {o.response_code for _, _, o in seeded} == {"00"}

        raced: Done = []
        race = [(c, RACE_MINOR) for _ in range(RACE_PER_CARD) for c in cards]
        running = asyncio.create_task(run_all(sessions, race, raced))
        await until(lambda: len(raced) >= KILL_AFTER or running.done(), 120.0)
        stack.kill("switch2")  # mid-run: its in-flight requests die with it
        stack.start_switch("switch2")
        await running
        await clear_reversals(sessions, 60.0)
    finally:
        for session in sessions:
            await session.close()

    residue = await wait_switch_settled(pg_url, SETTLE_TIMEOUT_S)
    assert residue.settled, residue.samples
    assert any(o.event is Event.COMMS_ERROR or o.reversal_queued for _, _, o in raced)
    codes = {o.response_code for _, _, o in raced if o.event is Event.RESPONSE}
    assert codes <= {"00", "61"}, codes
    assert "61" in codes  # the caps were reached
    journaled, counted = await read_sums(pg_url)
    assert len(journaled) == CARDS
    assert max(journaled.values()) <= DAY_CAP_MINOR
    for card_hash in journaled.keys() | counted.keys():
        assert counted.get(card_hash, 0) == journaled.get(card_hash, 0), card_hash[:8]
