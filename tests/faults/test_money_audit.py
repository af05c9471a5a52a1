"""The money audit under load with faults (issue 12), slow: terminals buy from random
cards while the switch (SQLite; PostgreSQL; two instances on PostgreSQL), the HSM or
the issuer is killed, hung or drops answers.  Each run ends with the audit: no card
off by a fen, no approval lost, no reversal applied twice, no duplicate 0420, nothing
left pending.  Faults strike after a random number of purchases (seeded: the seed is
printed; ``POSP_FAULT_SEED`` replays one)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.faults.procs import FaultStack
from tests.faults.scenario import Run, start_run

pytestmark = pytest.mark.slow

TERMINALS = 10
NETWORK_TIMEOUT_S = 1.5
TERMINAL_TIMEOUT_S = 4.0
SWITCH_KILLS = 10
HSM_KILLS = 5
HUNG_LATENCY_MS = 4000.0  # longer than the switch's network timeout
PURCHASES_BETWEEN = (30, 150)

Faults = Callable[[Run, random.Random], Awaitable[None]]


def seed_for(name: str) -> int:
    seed = int(os.environ.get("POSP_FAULT_SEED", random.SystemRandom().randrange(2**32)))
    print(f"\n{name}: seed {seed} (POSP_FAULT_SEED={seed} replays it)")
    return seed


async def pause(run: Run, rng: random.Random) -> None:
    """Between faults: a random number of approvals (the stack has recovered)."""
    await run.fleet.after_purchases(rng.randint(*PURCHASES_BETWEEN), approved=True)


async def kill_switches(run: Run, rng: random.Random) -> None:
    """``SWITCH_KILLS`` × kill -9 of a random instance, restarted on the same store."""
    for _ in range(SWITCH_KILLS):
        await pause(run, rng)
        await asyncio.to_thread(run.stack.restart_switch, rng.choice(run.stack.switch_names))
    await pause(run, rng)


async def kill_hsm(run: Run, rng: random.Random) -> None:
    """``HSM_KILLS`` × kill -9 of hsm-sim, down for a while, restarted on its port; the
    issuer answers after 50 ms, so kills find purchases between request and answer."""
    await asyncio.to_thread(run.stack.set_rules, latency_ms=50)
    for _ in range(HSM_KILLS):
        await pause(run, rng)
        await asyncio.to_thread(run.stack.kill, "hsm")
        await run.fleet.after_purchases(rng.randint(5, 30))
        await asyncio.to_thread(run.stack.start_hsm)
    await pause(run, rng)


async def kill_and_hang_issuer(run: Run, rng: random.Random) -> None:
    """kill -9 of the (durable) issuer, restarted on its file, and hung periods."""
    stack = run.stack
    for _ in range(3):
        await pause(run, rng)
        await asyncio.to_thread(stack.kill, "issuer")
        await asyncio.to_thread(stack.start_issuer)
        await pause(run, rng)
        await asyncio.to_thread(stack.set_rules, latency_ms=HUNG_LATENCY_MS)
        await run.fleet.after_purchases(rng.randint(10, 40))
        await asyncio.to_thread(stack.set_rules, latency_ms=0)
    await pause(run, rng)


async def drop_answers(run: Run, rng: random.Random) -> None:
    """20 % of the issuer's answers dropped for a stretch of load (terminals give up
    before the switch does, so each drop also brings the terminal's 0400, sent after
    an idle moment: sometimes before the switch's own 0420, sometimes after)."""
    run.fleet.idle_after_unanswered_s = 2 * NETWORK_TIMEOUT_S
    await asyncio.to_thread(run.stack.set_rules, drop_rate=0.2)
    for _ in range(3):
        await pause(run, rng)
    await asyncio.to_thread(run.stack.set_rules, drop_rate=0)


async def audited_load(
    stack: FaultStack,
    faults: Faults,
    *,
    hsm: bool = False,
    terminal_timeout_s: float = TERMINAL_TIMEOUT_S,
) -> None:
    rng = random.Random(seed_for(stack.run_dir.name))
    seed = rng.randrange(2**32)
    run = await start_run(
        stack, TERMINALS, response_timeout_s=terminal_timeout_s, seed=seed, hsm=hsm
    )
    stop = asyncio.Event()
    load = asyncio.create_task(run.fleet.run(stop))
    try:
        await faults(run, rng)
    finally:
        stop.set()
        await load
    report = await run.finish()
    assert report.approved_seen > 0
    assert report.clean, report.summary()


def faulty(tmp_path: Path, stacks: list[FaultStack], **options: object) -> FaultStack:
    stack = FaultStack(tmp_path, network_timeout_s=NETWORK_TIMEOUT_S, **options)  # type: ignore[arg-type]
    stacks.append(stack)
    return stack


async def test_switch_kill_9_on_sqlite_loses_no_money(
    tmp_path: Path, stacks: list[FaultStack]
) -> None:
    """10 × kill -9 of the switch under load, SQLite store: the audit is clean."""
    await audited_load(faulty(tmp_path, stacks), kill_switches)


async def test_switch_kill_9_on_postgresql_loses_no_money(
    tmp_path: Path, pg_url: str, stacks: list[FaultStack]
) -> None:
    """10 × kill -9 of the switch under load, PostgreSQL store: the audit is clean."""
    await audited_load(faulty(tmp_path, stacks, store_url=pg_url), kill_switches)


async def test_two_switches_on_postgresql_killed_lose_no_money(
    tmp_path: Path, pg_url: str, stacks: list[FaultStack]
) -> None:
    """Two instances on one PostgreSQL, terminals split across them, 10 × kill -9 of
    either: the audit is clean."""
    await audited_load(faulty(tmp_path, stacks, store_url=pg_url, switch_count=2), kill_switches)


async def test_hsm_kill_9_loses_no_money(tmp_path: Path, stacks: list[FaultStack]) -> None:
    """5 × kill -9 of hsm-sim under load, restarted: the audit is clean."""
    await audited_load(faulty(tmp_path, stacks), kill_hsm, hsm=True)


async def test_issuer_killed_and_hung_loses_no_money(
    tmp_path: Path, stacks: list[FaultStack]
) -> None:
    """3 × kill -9 of the durable issuer and 3 hung stretches under load: clean audit."""
    await audited_load(faulty(tmp_path, stacks), kill_and_hang_issuer)


async def test_dropped_issuer_answers_lose_no_money(
    tmp_path: Path, stacks: list[FaultStack]
) -> None:
    """20 % of the issuer's answers dropped under load, terminals giving up before the
    switch: clean audit, one 0420 per reversed original."""
    await audited_load(
        faulty(tmp_path, stacks), drop_answers, terminal_timeout_s=NETWORK_TIMEOUT_S - 0.5
    )
