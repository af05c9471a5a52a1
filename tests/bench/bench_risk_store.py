"""Risk store benchmark: what the risk counters cost SQLite per purchase, in
isolation, rung by rung (the purchase benchmark's ``POSP_BENCH_RISK=ladder``
rungs: no counter, one counter, the hard limits, the default ruleset).

Per purchase, on the store's real schema and with its own statements and
connections:

* the snapshot: ``sqlite_read`` of every key the rules may read, one statement
  on the store's inline reader connection (``_open_inline``: the event loop's);
* the writer transaction, as the writer thread runs a group of one job:
  ``BEGIN IMMEDIATE``, ``SAVEPOINT``, a one-row insert standing in for the
  journal entry, the hold (``sqlite_check_and_add``), the hold's record
  (``INSERT_RECORD``), ``RELEASE``, ``COMMIT``.

What it leaves out: the journal entry's own columns and indexes (the stand-in
has none), the rules' evaluation and decisions (every record passes, flags
nothing and is written), and the group commit (the running writer shares one
COMMIT among the jobs that queued meanwhile, so the COMMIT figure is that of a
group of one: an upper bound).

Between two purchases a third connection commits a row of its own, as the other
``posp serve`` process does on a shared file: each purchase then starts with the
page caches emptied, as in the running switch.  Cards: ``CARDS`` on
``TERMINALS`` terminals of one merchant, every counter row created in a warm-up
pass first.  Figures: this thread's CPU per purchase (µs), the rungs
interleaved over ``ROUNDS`` rounds.  Run: ``python -m tests.bench risk_store``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from posp.risk.engine import CompiledRuleset
from posp.risk.inputs import RiskInput
from posp.risk.ruleset import load_ruleset
from posp.store.risk_counters import sqlite_add, sqlite_check_and_add, sqlite_read
from posp.store.risk_records import INSERT_RECORD, SqlRiskRecords
from posp.store.sqlite import SqliteStore
from tests.bench.bench_purchase import LADDER, ruleset_of

CARDS = 200
TERMINALS = 48
PURCHASES = 3_000
ROUNDS = 2
MERCHANT_ID = "898100000000001"
_NOON = dt.datetime(2026, 12, 4, 12, 0)
STAND_IN = "CREATE TABLE IF NOT EXISTS bench_entries (id INTEGER PRIMARY KEY, note TEXT)"


class Costs(NamedTuple):
    """Thread CPU of one purchase's parts, in seconds."""

    snapshot: float
    begin_and_entry: float
    hold: float
    record: float
    commit: float  # RELEASE and COMMIT

    @property
    def writer(self) -> float:
        return self.begin_and_entry + self.hold + self.record + self.commit


class Lab:
    """A database file with the store's schema and three connections on it."""

    def __init__(self, path: Path) -> None:
        asyncio.run(_create(path))
        store = SqliteStore(str(path))
        self.writer = store._connect(writer=True)
        self.other = store._connect(writer=True)  # the other process's writer
        self.reader = store._open_inline()
        self.other.execute(STAND_IN)
        rng = random.Random(19)
        self.cards = [f"{rng.getrandbits(128):032x}" for _ in range(CARDS)]
        self.terminals = [f"7{n:07d}" for n in range(TERMINALS)]
        self.rng = rng

    def purchase(self, rules: CompiledRuleset, n: int) -> Costs:
        rng = self.rng
        inp = RiskInput(
            txn_type="purchase",
            amount_minor=rng.randint(100, 5_000),
            card_hash=rng.choice(self.cards),
            bin="622848",
            terminal_id=rng.choice(self.terminals),
            merchant_id=MERCHANT_ID,
            mcc="5411",
            local_time=_NOON + dt.timedelta(milliseconds=n),
        )
        prepared = rules.prepare(inp)
        clock = time.thread_time
        t0 = clock()
        if prepared.keys:
            self.reader.execute(sqlite_read(len(prepared.keys)), prepared.keys).fetchall()
        t1 = clock()
        hold = rules.evaluate_prepared(prepared, {}).hold
        add = sqlite_add(hold) if hold else None
        record = SqlRiskRecords._record_params(
            n,
            rrn=f"{n:012d}",
            terminal_id=inp.terminal_id,
            local_day=inp.local_time.date(),
            ruleset_version=rules.version,
            outcome="pass",
            flagged=False,
            decisions=[],
            hold=hold,
        )
        w = self.writer
        t2 = clock()
        w.execute("BEGIN IMMEDIATE")
        w.execute("SAVEPOINT job")
        w.execute("INSERT INTO bench_entries (note) VALUES ('the journal entry')")
        t3 = clock()
        if hold:
            sqlite_check_and_add(w, hold, add)
        t4 = clock()
        if hold:
            w.execute(INSERT_RECORD, record).fetchall()
        t5 = clock()
        w.execute("RELEASE job")
        w.execute("COMMIT")
        t6 = clock()
        self.other.execute("BEGIN IMMEDIATE")
        self.other.execute("INSERT INTO bench_entries (note) VALUES ('the other process')")
        self.other.execute("COMMIT")
        return Costs(t1 - t0, t3 - t2, t4 - t3, t5 - t4, t6 - t5)


async def _create(path: Path) -> None:
    store = SqliteStore(str(path))
    await store.open()  # the schema, by the store's own migrations
    await store.close()


def _mean_us(costs: list[Costs], part: Callable[[Costs], float]) -> float:
    return statistics.fmean(part(c) for c in costs) * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-risk-store-") as tmp:
        folder = Path(tmp)
        rungs = [
            (name, load_ruleset(ruleset_of(ids, folder / f"{i}.toml") if ids else None))
            for i, (name, ids) in enumerate(LADDER)
        ]
        lab = Lab(folder / "risk.db")
        n = 0
        for _, rules in rungs:  # warm-up: every counter row exists, caches are filled
            for _ in range(PURCHASES):
                lab.purchase(rules, n := n + 1)
        costs: dict[str, list[Costs]] = {name: [] for name, _ in rungs}
        for _ in range(ROUNDS):
            for name, rules in rungs:
                costs[name] += [lab.purchase(rules, n := n + 1) for _ in range(PURCHASES)]
        print(
            f"thread CPU per purchase, µs ({CARDS} cards on {TERMINALS} terminals,"
            f" {ROUNDS} × {PURCHASES:,} purchases per rung, another connection committing"
            " between purchases):"
        )
        print("  rung          snapshot  writer txn  (begin+entry  hold  record  commit)")
        for name, got in costs.items():
            print(
                f"  {name:<12} {_mean_us(got, lambda c: c.snapshot):9.1f}"
                f" {_mean_us(got, lambda c: c.writer):11.1f}"
                f"  ({_mean_us(got, lambda c: c.begin_and_entry):11.1f}"
                f" {_mean_us(got, lambda c: c.hold):5.1f}"
                f" {_mean_us(got, lambda c: c.record):7.1f}"
                f" {_mean_us(got, lambda c: c.commit):7.1f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
