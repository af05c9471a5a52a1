"""The in-process test stack shared by the e2e, conformance and scale-out suites:
issuer simulator (port 0, a few demo cards, its own in-process HSM, ledger in a
SQLite file) → Switch (port 0, in-process HSM, short network timeout) → simulated
terminals provisioned under known TMKs.

Invariants: everything listens on 127.0.0.1 with an ephemeral port; the store is
SQLite in the test's directory unless a ``store_url`` (PostgreSQL) is given; whoever
starts a piece closes it (``Stack.close`` closes everything it started).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from issuer_sim.app import start_issuer
from issuer_sim.cardfile import DEMO_CARDS
from issuer_sim.server import IssuerServer
from issuer_sim.settings import IssuerSettings
from posp.hsm.api import KEY_TMK, HsmClient
from posp.lab.fleetfile import FleetTerminal
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.settings import Settings, load_settings
from posp.store import Merchant, Store, Terminal, open_store
from posp.switch import Switch
from terminals.cards import TerminalCard, load_cards
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from terminals.session import SessionOptions, TerminalSession

MERCHANT_ID = "898100000000001"
TMK_HEX = "0123456789ABCDEFFEDCBA9876543210"
NETWORK_TIMEOUT_S = 1.0
CARD_COUNT = 6  # active demo cards the issuer loads (provisioning each costs HSM work)


def write_card_file(path: Path, count: int = CARD_COUNT) -> Path:
    """The first ``count`` active demo cards as a card file."""
    with DEMO_CARDS.open(newline="") as source:
        rows = [row for row in csv.DictReader(source) if row["status"] == "active"][:count]
    with path.open("w", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


async def start_test_issuer(
    cards: Path, db: Path, *, port: int = 0, **overrides: Any
) -> IssuerServer:
    """The issuer simulator on 127.0.0.1 with its own in-process HSM."""
    values: dict[str, Any] = {"port": port, "cards": cards, "db": str(db)}
    values.update(overrides)
    return await start_issuer(IssuerSettings.model_validate(values), hsm=inprocess_hsm_client())


def switch_settings(
    data_dir: Path,
    *,
    issuer_port: int,
    store_url: str | None = None,
    node_id: int = 1,
    network_timeout_s: float = NETWORK_TIMEOUT_S,
    **network: Any,
) -> Settings:
    """Switch settings: terminal port 0, no metrics listener, linked to the issuer."""
    return load_settings(
        terminal_port=0,
        metrics_enabled=False,
        network_enabled=True,
        data_dir=data_dir,
        store_url=store_url or f"sqlite:///{data_dir / 'posp.db'}",
        node_id=node_id,
        network={
            "port": issuer_port,
            "timeout_s": network_timeout_s,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.2,
            "connect_timeout_s": 2.0,
            **network,
        },
    )


async def provision_terminal(
    store: Store,
    hsm: HsmClient,
    terminal_id: str,
    tmk_hex: str = TMK_HEX,
    *,
    merchant_id: str = MERCHANT_ID,
    merchant_name: str = "Test shop",
) -> FleetTerminal:
    """The merchant (when missing) and one terminal whose TMK is ``tmk_hex``."""
    if await store.get_merchant(merchant_id) is None:
        await store.add_merchant(Merchant(merchant_id, merchant_name, "5411"))
    tmk = await hsm.form_key_from_clear_components(KEY_TMK, [tmk_hex], "U")
    await store.add_terminal(
        Terminal(terminal_id, merchant_id, tmk_lmk=tmk.under_lmk, tmk_kcv=tmk.kcv)
    )
    return FleetTerminal(terminal_id, merchant_id, bytes.fromhex(tmk_hex))


@dataclass
class Stack:
    """Terminal-side helpers plus the running switch and issuer; tests can stop the
    switch (or the issuer) and bring up a new one on the same files."""

    tmp_path: Path
    issuer: IssuerServer | None = None
    switch: Switch | None = None
    store: Store | None = None
    hsm: HsmClient = field(default_factory=inprocess_hsm_client)
    sessions: list[TerminalSession] = field(default_factory=list)
    cards: list[TerminalCard] = field(default_factory=list)
    issuer_port: int = 0
    store_url: str | None = None  # default: SQLite in tmp_path
    node_id: int = 1

    @classmethod
    def create(cls, tmp_path: Path, **fields: Any) -> Stack:
        """A stack whose issuer will load the first few demo cards."""
        cards = write_card_file(tmp_path / "cards.csv")
        stack = cls(tmp_path, **fields)
        stack.cards = load_cards(cards)
        return stack

    async def start_issuer(self, **overrides: Any) -> IssuerServer:
        overrides.setdefault("flush_interval_s", 0.2)
        self.issuer = await start_test_issuer(
            self.tmp_path / "cards.csv", self.tmp_path / "issuer.db", port=self.issuer_port,
            **overrides,
        )  # fmt: skip
        self.issuer_port = self.issuer.port
        return self.issuer

    async def stop_issuer(self) -> None:
        if self.issuer is not None:
            await self.issuer.close()
            self.issuer = None

    def settings(self, node_id: int | None = None, **network: Any) -> Settings:
        """Settings of a switch instance of this stack (same store, same issuer)."""
        node = self.node_id if node_id is None else node_id
        return switch_settings(
            self.tmp_path / f"node{node}" if node != self.node_id else self.tmp_path,
            issuer_port=self.issuer_port,
            store_url=self.store_url or f"sqlite:///{self.tmp_path / 'posp.db'}",
            node_id=node,
            **network,
        )

    async def start_switch(self, **network: Any) -> Switch:
        settings = self.settings(**network)
        if self.store is None:
            self.store = open_store(settings.store_url, node_id=f"{self.node_id:02d}")
            await self.store.open()
        self.switch = Switch(settings, store=self.store, hsm=self.hsm)
        await self.switch.start()
        return self.switch

    async def stop_switch(self) -> None:
        for session in self.sessions:
            await session.close()
        if self.switch is not None:
            await self.switch.stop()
            self.switch = None

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, tmp_path: Path) -> AsyncIterator[Stack]:
        """The issuer and the switch started (demo cards), closed on leaving."""
        stack = cls.create(tmp_path)
        await stack.start_issuer()
        await stack.start_switch()
        try:
            yield stack
        finally:
            await stack.close()

    async def close(self) -> None:
        await self.stop_switch()
        await self.stop_issuer()
        if self.store is not None:
            await self.store.close()

    async def provision(self, terminal_id: str) -> None:
        assert self.store is not None
        await provision_terminal(self.store, self.hsm, terminal_id, merchant_name="E2E shop")

    async def terminal(
        self,
        terminal_id: str = "10000001",
        *,
        variant: str = "003",
        port: int | None = None,
        **config: Any,
    ) -> TerminalSession:
        """A provisioned, signed-in terminal on a long connection (to ``port``, by
        default this stack's switch)."""
        await self.provision(terminal_id)
        machine = TerminalMachine(
            TerminalConfig(terminal_id, MERCHANT_ID, bytes.fromhex(TMK_HEX), **config)
        )
        session = self.session(machine, variant, port=port)
        outcome = await session.exchange(machine.sign_in(variant))
        assert outcome.approved, outcome
        return session

    def session(
        self, machine: TerminalMachine, variant: str = "003", *, port: int | None = None
    ) -> TerminalSession:
        """A session of ``machine`` (several sessions may share one machine, used one
        at a time: the same terminal reaching another switch instance)."""
        if port is None:
            assert self.switch is not None
            port = self.switch.port
        options = SessionOptions(
            port=port,
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


async def eventually(check: Callable[[], Any], timeout_s: float = 5.0) -> None:
    """Wait until ``await check()`` (or ``check()``) is truthy; AssertionError at the
    deadline (SAF delivery and key promotion are asynchronous)."""
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
