"""The real stack for the conformance catalogue, started once per module:
issuer simulator (demo rules, a few demo cards, its own in-process HSM) →
Switch (port 0, SQLite store in tmp, in-process HSM, short network timeout)
with the catalogue's three terminals provisioned under known TMKs.

Invariants: everything listens on 127.0.0.1 with an ephemeral port; terminal
``99999999`` and merchant ``899999999999999`` are never provisioned (the
catalogue checks they are refused); the stack is closed when the module ends.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from issuer_sim.app import start_issuer
from issuer_sim.cardfile import DEMO_CARDS
from issuer_sim.settings import IssuerSettings
from posp.hsm import InProcessHsmClient
from posp.hsm.api import KEY_TMK
from posp.settings import load_settings
from posp.store import Merchant, Store, Terminal, open_store
from posp.switch import Switch
from terminals.cards import TerminalCard, load_cards
from terminals.conformance import ConformanceTarget
from terminals.fleetfile import FleetTerminal

MERCHANT_ID = "898100000000001"
TMK_HEX = ("0123456789ABCDEFFEDCBA9876543210", "11223344556677888877665544332211")
TERMINAL_IDS = ("10000001", "10000002", "10000003")
CARD_COUNT = 4  # active demo cards loaded by the issuer (each costs HSM work)
# The dropped-answer scenario waits for one of these; short keeps the run fast.
NETWORK_TIMEOUT_S = 0.5
TERMINAL_DROP_TIMEOUT_S = 1.5


def write_cards(path: Path, count: int = CARD_COUNT) -> Path:
    """The first ``count`` active demo cards as a card file."""
    with DEMO_CARDS.open(newline="") as source:
        rows = [row for row in csv.DictReader(source) if row["status"] == "active"][:count]
    with path.open("w", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


async def provision(store: Store, hsm: InProcessHsmClient) -> list[FleetTerminal]:
    """The merchant and the three terminals, TMKs imported from clear components."""
    await store.add_merchant(Merchant(MERCHANT_ID, "Conformance shop", "5411"))
    fleet = []
    for index, terminal_id in enumerate(TERMINAL_IDS):
        tmk_hex = TMK_HEX[index % len(TMK_HEX)]
        tmk = await hsm.form_key_from_clear_components(KEY_TMK, [tmk_hex], "U")
        await store.add_terminal(
            Terminal(terminal_id, MERCHANT_ID, tmk_lmk=tmk.under_lmk, tmk_kcv=tmk.kcv)
        )
        fleet.append(FleetTerminal(terminal_id, MERCHANT_ID, bytes.fromhex(tmk_hex)))
    return fleet


@dataclass(frozen=True)
class RunningStack:
    target: ConformanceTarget
    switch: Switch
    cards: list[TerminalCard]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningStack]:
    tmp = tmp_path_factory.mktemp("conformance")
    cards_path = write_cards(tmp / "cards.csv")
    issuer = await start_issuer(
        IssuerSettings.model_validate(
            {"port": 0, "cards": cards_path, "db": str(tmp / "issuer.db")}
        ),
        hsm=InProcessHsmClient(),
    )
    store = open_store(f"sqlite:///{tmp / 'posp.db'}", node_id="01")
    await store.open()
    hsm = InProcessHsmClient()
    switch: Switch | None = None
    try:
        fleet = await provision(store, hsm)
        settings = load_settings(
            terminal_port=0,
            metrics_enabled=False,
            network_enabled=True,
            data_dir=tmp,
            store_url=f"sqlite:///{tmp / 'posp.db'}",
            network={
                "port": issuer.port,
                "timeout_s": NETWORK_TIMEOUT_S,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.2,
                "connect_timeout_s": 2.0,
            },
        )
        switch = Switch(settings, store=store, hsm=hsm)
        await switch.start()
        cards = load_cards(cards_path)
        target = ConformanceTarget(
            "127.0.0.1",
            switch.port,
            fleet,
            cards,
            timeout_s=5.0,
            drop_timeout_s=TERMINAL_DROP_TIMEOUT_S,
        )
        yield RunningStack(target, switch, cards)
    finally:
        if switch is not None:
            await switch.stop()
        await store.close()
        await issuer.close()
