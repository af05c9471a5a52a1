"""Conservation soak (slow): transfers between many cards through real processes
(``posp serve``, ``issuer-sim serve --drop-rate 0.1``) while the switch is
``kill -9``ed and restarted twice.  Afterwards the sum of all balances is what it
was, to the fen; every card's balance is its start plus exactly the transfers the
issuer still counts; every transfer the switch did not count as approved
(timed out, reversed, cut off by a kill) is undone at the issuer, and every one
it counted is not.

``POSP_SOAK_TRANSFERS`` sets the count (default 10,000); figures are printed.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest

from posp.lab.fleetfile import read_fleet_file
from posp.store import open_store
from terminals.cards import TerminalCard
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from terminals.outcome import Event
from terminals.session import SessionOptions, TerminalSession
from terminals.txn import TxnKind
from tests.e2e.conftest import eventually
from tests.terminals.processes import BIN, LabProcess, LabStack, free_port

TRANSFERS: Final = int(os.environ.get("POSP_SOAK_TRANSFERS", "10000"))
CARDS: Final = 100
TERMINALS: Final = 20
KILLS: Final = 2
DROP_RATE: Final = 0.1
BALANCE_MINOR: Final = 10_000_000
PIN: Final = "123456"
SWITCH_ENV: Final = {
    "POSP_NETWORK__TIMEOUT_S": "1.0",
    "POSP_LIMITS__REQUEST_DEADLINE_S": "4",
    "POSP_RECOVERY__SWEEP_INTERVAL_S": "0.5",
    "POSP_RECOVERY__IN_DOUBT_GRACE_S": "0.5",
}


def luhn_pan(body: str) -> str:
    """``body`` + its Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def write_cards(path: Path) -> list[TerminalCard]:
    pans = [luhn_pan(f"622588770000{n:06d}") for n in range(CARDS)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pan", "expiry", "pin", "status", "balance_minor", "daily_limit_minor",
                         "card_org", "holder_name", "currency", "issuer_id"])  # fmt: skip
        for n, pan in enumerate(pans):
            issuer = "00020344" if n % 2 else ""  # half the cards at another issuer
            writer.writerow([pan, "3012", PIN, "active", BALANCE_MINOR, 10**12, "CUP",
                             f"HOLDER {n}", "156", issuer])  # fmt: skip
    return [TerminalCard(pan, "3012", PIN) for pan in pans]


@dataclass
class Run:
    stack: LabStack
    switch_port: int
    cards: list[TerminalCard]
    switch: LabProcess | None = None
    up: asyncio.Event = field(default_factory=asyncio.Event)
    attempts: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    milestones: list[asyncio.Event] = field(default_factory=list)

    def start_switch(self) -> None:
        self.stack.env["POSP_TERMINAL_PORT"] = str(self.switch_port)
        self.switch = self.stack.spawn("posp-serve", [str(BIN / "posp"), "serve"], self.switch_port)
        self.up.set()

    def kill_switch(self) -> None:
        assert self.switch is not None
        self.up.clear()
        self.switch.process.send_signal(signal.SIGKILL)
        self.switch.process.wait()


async def terminal_loop(run: Run, session: TerminalSession, rng: random.Random) -> None:
    while run.attempts < TRANSFERS:
        await run.up.wait()
        payer, payee = rng.sample(run.cards, 2)
        amount = rng.randint(1, 5_000)
        build = functools.partial(TerminalMachine.transfer, card=payer, receiving_pan=payee.pan,
                                  amount_minor=amount, pin=PIN)  # fmt: skip
        outcome = await session.transact(build)
        if outcome.kind is TxnKind.TRANSFER:
            run.attempts += 1
            run.codes[outcome.response_code or outcome.event.value] += 1
            for n, milestone in enumerate(run.milestones, start=1):
                if run.attempts >= n * TRANSFERS // (KILLS + 1):
                    milestone.set()
        elif outcome.event is not Event.RESPONSE:
            await run.up.wait()


async def killer(run: Run) -> None:
    for milestone in run.milestones:
        await milestone.wait()
        run.kill_switch()
        await asyncio.to_thread(run.start_switch)


async def settle_reversals(run: Run, sessions: list[TerminalSession]) -> None:
    """Every terminal sends the reversal it still owes (0410 clears it)."""
    for session in sessions:
        for _ in range(10):
            if await session.prepare() is None:
                break
        await session.close()


async def switch_quiet(store_url: str) -> None:
    """No pending entry and an empty SAF queue at the switch."""
    store = open_store(store_url, node_id="99")
    await store.open()
    try:

        async def quiet() -> bool:
            return await store.saf_depth() == 0 and not pending_entries(store_url)

        await eventually(quiet, timeout_s=120)
    finally:
        await store.close()


def pending_entries(store_url: str) -> int:
    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
        (count,) = db.execute("SELECT count(*) FROM journal WHERE state = 'pending'").fetchone()
    return int(count)


def issuer_books(db_path: Path) -> tuple[dict[str, int], dict[str, tuple[str, str, str, int]]]:
    """(balance by PAN, key → (kind, state, pan, amount)) from the issuer's file."""
    with sqlite3.connect(db_path) as db:
        balances = dict(db.execute("SELECT pan, balance_minor FROM accounts").fetchall())
        txns = {
            row[0]: (row[1], row[2], row[3], row[4])
            for row in db.execute("SELECT key, kind, state, pan, amount_minor FROM txns")
        }
    return balances, txns


def switch_transfers(store_url: str) -> list[tuple[str, str, str | None, str | None]]:
    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
        return db.execute(
            "SELECT state, trace, network_stan, network_f7 FROM journal"
            " WHERE txn_type = 'transfer' AND direction = 'original'"
        ).fetchall()


@pytest.mark.slow
@pytest.mark.timeout(7200)
async def test_transfers_conserve_money_through_drops_and_switch_kills(tmp_path: Path) -> None:
    started = time.perf_counter()
    stack = LabStack(tmp_path)
    cards = write_cards(tmp_path / "cards.csv")
    issuer_db = tmp_path / "issuer.db"
    try:
        issuer_port = free_port()
        issuer_argv = [str(BIN / "issuer-sim"), "serve", "--port", str(issuer_port),
                       "--cards", str(tmp_path / "cards.csv"), "--db", str(issuer_db),
                       "--drop-rate", str(DROP_RATE)]  # fmt: skip
        issuer = await asyncio.to_thread(stack.spawn, "issuer-sim", issuer_argv, issuer_port)
        stack.switch_env(issuer_port=issuer_port, hsm_url="inprocess://")
        stack.env.update(SWITCH_ENV)
        fleet = read_fleet_file(stack.provision_fleet(TERMINALS))
        run = Run(stack, free_port(), cards)
        run.milestones = [asyncio.Event() for _ in range(KILLS)]
        await asyncio.to_thread(run.start_switch)
        sessions = [
            TerminalSession(
                TerminalMachine(TerminalConfig(t.terminal_id, t.merchant_id, t.tmk)),
                SessionOptions(port=run.switch_port, response_timeout_s=10, long_connection=True),
            )
            for t in fleet
        ]
        kills = asyncio.create_task(killer(run))
        await asyncio.gather(
            *(terminal_loop(run, s, random.Random(n)) for n, s in enumerate(sessions))
        )
        await kills
        await settle_reversals(run, sessions)
        store_url = f"sqlite:///{tmp_path / 'data' / 'posp.db'}"
        await switch_quiet(store_url)
        issuer.process.send_signal(signal.SIGTERM)  # flushes the ledger
        await asyncio.to_thread(issuer.process.wait, 30)
    finally:
        await asyncio.to_thread(stack.close)
    elapsed_s = time.perf_counter() - started

    balances, txns = issuer_books(issuer_db)
    entries = switch_transfers(store_url)
    states = Counter(state for state, *_ in entries)
    print(
        f"\n{run.attempts} transfers in {elapsed_s:.0f} s; terminal codes {dict(run.codes)};"
        f" switch states {dict(states)}; issuer transfer states"
        f" {dict(Counter(t[1] for t in txns.values() if t[0] == 'transfer'))}"
    )
    assert sum(balances.values()) == CARDS * BALANCE_MINOR
    # Each card: its start plus exactly the legs the issuer still counts.
    expected = dict.fromkeys(balances, BALANCE_MINOR)
    for key, (kind, state, pan, amount) in txns.items():
        if kind == "transfer" and state == "approved":
            expected[pan] -= amount
        elif kind == "transfer_credit" and state == "approved":
            expected[pan] += amount
            assert txns[key.split("/")[0]][1] == "approved"
    assert balances == expected
    # The switch's view and the issuer's agree: approved ↔ still counted upstream.
    by_ids = {(k[4:10], k[10:20]): t for k, t in txns.items() if t[0] == "transfer"}
    undone = 0
    for state, trace, stan, f7 in entries:
        upstream = by_ids.get((stan or "", f7 or ""))
        if state == "approved":
            assert upstream is not None and upstream[1] == "approved", trace
        elif upstream is not None:
            assert upstream[1] != "approved", (state, trace)
            undone += upstream[1] == "reversed"
    assert undone > 0 and states["approved"] > 0
