"""End-to-end fixtures over real sockets: simulated terminals (terminals.machine +
session) → Switch (port 0, SQLite in tmp_path, in-process HSM) → issuer simulator
(port 0, a few demo cards, its own in-process HSM, ledger in a SQLite file).

``Stack`` starts and restarts the pieces so tests can stop the switch (or the
issuer) and bring up a new one on the same files.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from issuer_sim.app import start_issuer
from issuer_sim.cardfile import DEMO_CARDS
from issuer_sim.server import IssuerServer
from issuer_sim.settings import IssuerSettings
from posp.hsm import InProcessHsmClient
from posp.hsm.api import KEY_TMK
from posp.settings import load_settings
from posp.store import Merchant, Store, Terminal, open_store
from posp.switch import Switch
from terminals.cards import TerminalCard, load_cards
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from terminals.outcome import Outcome
from terminals.session import SessionOptions, TerminalSession

MERCHANT_ID = "898100000000001"
TMK_HEX = "0123456789ABCDEFFEDCBA9876543210"
NETWORK_TIMEOUT_S = 1.0
CARD_COUNT = 6  # active demo cards the issuer loads


def write_card_file(path: Path, count: int = CARD_COUNT) -> Path:
    """The first ``count`` active demo cards (provisioning every card costs time)."""
    with DEMO_CARDS.open(newline="") as source:
        rows = [row for row in csv.DictReader(source) if row["status"] == "active"][:count]
    with path.open("w", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass
class Stack:
    """Terminal-side helpers plus the running switch and issuer."""

    tmp_path: Path
    issuer: IssuerServer | None = None
    switch: Switch | None = None
    store: Store | None = None
    hsm: InProcessHsmClient = field(default_factory=InProcessHsmClient)
    sessions: list[TerminalSession] = field(default_factory=list)
    cards: list[TerminalCard] = field(default_factory=list)
    issuer_port: int = 0

    async def start_issuer(self, **overrides: Any) -> IssuerServer:
        values: dict[str, Any] = {
            "port": self.issuer_port,
            "cards": self.tmp_path / "cards.csv",
            "db": str(self.tmp_path / "issuer.db"),
            "flush_interval_s": 0.2,
        }
        values.update(overrides)
        self.issuer = await start_issuer(
            IssuerSettings.model_validate(values), hsm=InProcessHsmClient()
        )
        self.issuer_port = self.issuer.port
        return self.issuer

    async def stop_issuer(self) -> None:
        if self.issuer is not None:
            await self.issuer.close()
            self.issuer = None

    async def start_switch(self, **network: Any) -> Switch:
        if self.store is None:
            self.store = open_store(f"sqlite:///{self.tmp_path / 'posp.db'}", node_id="01")
            await self.store.open()
        settings = load_settings(
            terminal_port=0,
            metrics_enabled=False,
            network_enabled=True,
            data_dir=self.tmp_path,
            store_url=f"sqlite:///{self.tmp_path / 'posp.db'}",
            network={
                "port": self.issuer_port,
                "timeout_s": NETWORK_TIMEOUT_S,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.2,
                "connect_timeout_s": 2.0,
                **network,
            },
        )
        self.switch = Switch(settings, store=self.store, hsm=self.hsm)
        await self.switch.start()
        return self.switch

    async def stop_switch(self) -> None:
        for session in self.sessions:
            await session.close()
        if self.switch is not None:
            await self.switch.stop()
            self.switch = None

    async def close(self) -> None:
        await self.stop_switch()
        await self.stop_issuer()
        if self.store is not None:
            await self.store.close()

    async def provision(self, terminal_id: str) -> None:
        assert self.store is not None
        if await self.store.get_merchant(MERCHANT_ID) is None:
            await self.store.add_merchant(Merchant(MERCHANT_ID, "E2E shop", "5411"))
        tmk = await self.hsm.form_key_from_clear_components(KEY_TMK, [TMK_HEX], "U")
        await self.store.add_terminal(
            Terminal(terminal_id, MERCHANT_ID, tmk_lmk=tmk.under_lmk, tmk_kcv=tmk.kcv)
        )

    async def terminal(
        self, terminal_id: str = "10000001", *, variant: str = "003", **config: Any
    ) -> TerminalSession:
        """A provisioned, signed-in terminal on a long connection."""
        await self.provision(terminal_id)
        machine = TerminalMachine(
            TerminalConfig(terminal_id, MERCHANT_ID, bytes.fromhex(TMK_HEX), **config)
        )
        session = self.session(machine, variant)
        outcome = await session.exchange(machine.sign_in(variant))
        assert outcome.approved, outcome
        return session

    def session(self, machine: TerminalMachine, variant: str = "003") -> TerminalSession:
        assert self.switch is not None
        options = SessionOptions(
            port=self.switch.port,
            response_timeout_s=5.0,
            long_connection=True,
            sign_in_variant=variant,
        )
        session = TerminalSession(machine, options)
        self.sessions.append(session)
        return session

    async def balance(self, card: TerminalCard) -> int:
        assert self.issuer is not None
        return await self.issuer.balance(card.pan)

    async def held(self, card: TerminalCard) -> int:
        assert self.issuer is not None
        return self.issuer.ledger.accounts[card.pan].held_minor


async def transact(session: TerminalSession, build: Callable[[TerminalMachine], bytes]) -> Outcome:
    """One transaction (after a due reversal, as a terminal does)."""
    return await session.transact(build)


async def eventually(check: Callable[[], Any], timeout_s: float = 5.0) -> None:
    """Wait until ``await check()`` is truthy (SAF delivery is asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    write_card_file(tmp_path / "cards.csv")
    running = Stack(tmp_path)
    running.cards = load_cards(tmp_path / "cards.csv")
    await running.start_issuer()
    await running.start_switch()
    yield running
    await running.close()


@pytest.fixture
def card(stack: Stack) -> TerminalCard:
    return stack.cards[0]
