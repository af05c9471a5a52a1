"""Switch fixtures: an in-process HSM, a SQLite store in tmp_path, a provisioned
terminal, and a started Switch on an ephemeral port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hsm_sim.server import HsmServer, start_hsm_server
from posp.hsm.api import KEY_TMK, HsmClient
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.settings import Settings, load_settings
from posp.store import Merchant, Store, Terminal, open_store
from posp.switch import Switch
from tests.switch.termclient import TEST_TMK_HEX, SimTerminal

TERMINAL_ID = "10000001"
MERCHANT_ID = "898100000000001"


def switch_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test switch: ephemeral port, no metrics server, no network."""
    values: dict[str, Any] = {
        "terminal_port": 0,
        "metrics_enabled": False,
        "network_enabled": False,
        "data_dir": tmp_path,
        "store_url": f"sqlite:///{tmp_path / 'posp.db'}",
    }
    values.update(overrides)
    return load_settings(**values)


async def provision(
    store: Store,
    hsm: HsmClient,
    terminal_id: str = TERMINAL_ID,
    merchant_id: str = MERCHANT_ID,
    tmk_hex: str = TEST_TMK_HEX,
    **terminal: Any,
) -> Terminal:
    """Register merchant (if new) and terminal with a TMK imported by K0."""
    if await store.get_merchant(merchant_id) is None:
        await store.add_merchant(Merchant(merchant_id, "Test shop", "5411"))
    tmk = await hsm.form_key_from_clear_components(KEY_TMK, [tmk_hex], "U")
    record = Terminal(terminal_id, merchant_id, tmk_lmk=tmk.under_lmk, tmk_kcv=tmk.kcv, **terminal)
    await store.add_terminal(record)
    return record


@pytest.fixture
async def hsm_server() -> AsyncIterator[HsmServer]:
    """An HSM simulator on an ephemeral port (for a switch with a TCP HSM)."""
    server = await start_hsm_server(host="127.0.0.1", port=0, metrics_port=0)
    yield server
    await server.close()


@pytest.fixture
def hsm() -> HsmClient:
    return inprocess_hsm_client()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'posp.db'}", node_id="01")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def switch(tmp_path: Path, store: Store, hsm: HsmClient) -> AsyncIterator[Switch]:
    await provision(store, hsm)
    running = Switch(switch_settings(tmp_path), store=store, hsm=hsm)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def terminal(switch: Switch) -> AsyncIterator[SimTerminal]:
    client = SimTerminal(TERMINAL_ID, MERCHANT_ID)
    await client.connect(switch.port)
    yield client
    await client.close()
