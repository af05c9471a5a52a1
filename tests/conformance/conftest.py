"""The real stack for the conformance catalogue, started once per module:
issuer simulator (demo rules, a few demo cards, its own in-process HSM) →
Switch (port 0, SQLite store in tmp, in-process HSM, short network timeout)
with the catalogue's three terminals provisioned under known TMKs
(the pieces come from :mod:`tests.stackfixtures`).

Invariants: everything listens on 127.0.0.1 with an ephemeral port; terminal
``99999999`` and merchant ``899999999999999`` are never provisioned (the
catalogue checks they are refused); the stack is closed when the module ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from posp.hsm.api import HsmClient
from posp.lab.fleetfile import FleetTerminal
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.store import Store, open_store
from posp.switch import Switch
from terminals.cards import TerminalCard, load_cards
from terminals.conformance import ConformanceTarget
from tests.e2e.transferstack import write_transfer_cards
from tests.stackfixtures import (
    MERCHANT_ID,
    provision_terminal,
    start_test_issuer,
    switch_settings,
)
from tests.tmsoperator import InProcessTmsOperator

TMK_HEX = ("0123456789ABCDEFFEDCBA9876543210", "11223344556677888877665544332211")
TERMINAL_IDS = ("10000001", "10000002", "10000003")
# The dropped-answer scenario waits for one of these; short keeps the run fast.
NETWORK_TIMEOUT_S = 0.5
TERMINAL_DROP_TIMEOUT_S = 1.5


async def provision(store: Store, hsm: HsmClient) -> list[FleetTerminal]:
    """The merchant and the three terminals, TMKs imported from clear components."""
    return [
        await provision_terminal(
            store,
            hsm,
            terminal_id,
            TMK_HEX[index % len(TMK_HEX)],
            merchant_id=MERCHANT_ID,
            merchant_name="Conformance shop",
        )
        for index, terminal_id in enumerate(TERMINAL_IDS)
    ]


@dataclass(frozen=True)
class RunningStack:
    target: ConformanceTarget
    switch: Switch
    cards: list[TerminalCard]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningStack]:
    tmp = tmp_path_factory.mktemp("conformance")
    cards_path = write_transfer_cards(tmp / "cards.csv")  # + another issuer's, a USD card
    issuer = await start_test_issuer(cards_path, tmp / "issuer.db")
    settings = switch_settings(tmp, issuer_port=issuer.port, network_timeout_s=NETWORK_TIMEOUT_S)
    store = open_store(settings.store_url, node_id="01")
    await store.open()
    hsm = inprocess_hsm_client()
    switch: Switch | None = None
    operator: InProcessTmsOperator | None = None
    try:
        fleet = await provision(store, hsm)
        switch = Switch(settings, store=store, hsm=hsm)
        await switch.start()
        cards = load_cards(cards_path)
        assert switch.tms is not None
        operator = InProcessTmsOperator(switch.tms, tmp / "tms")
        target = ConformanceTarget(
            "127.0.0.1",
            switch.port,
            fleet,
            cards,
            timeout_s=5.0,
            drop_timeout_s=TERMINAL_DROP_TIMEOUT_S,
            operator=operator,
        )
        yield RunningStack(target, switch, cards)
    finally:
        if operator is not None:
            await operator.close()
        if switch is not None:
            await switch.stop()
        await store.close()
        await issuer.close()
