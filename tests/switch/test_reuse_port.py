"""reuse_port: two switch instances (own node ids, one SQLite file) listen on ONE
terminal port and both serve the terminals the kernel hands them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.switch import Switch
from tests.switch.conftest import MERCHANT_ID, TERMINAL_ID, provision, switch_settings
from tests.switch.termclient import SimTerminal

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreading is Linux behaviour"
)

#: Connections opened: all on one listener by chance is 2**-(N-1) (≈ 2e-6 here).
CONNECTIONS = 20


async def test_two_switches_share_one_port_and_both_answer(tmp_path: Path) -> None:
    first = Switch(switch_settings(tmp_path, reuse_port=True, node_id=1))
    await first.start()
    second = Switch(switch_settings(tmp_path, reuse_port=True, node_id=2, terminal_port=first.port))
    terminals: list[SimTerminal] = []
    try:
        await second.start()
        assert second.port == first.port
        assert first.store is not None
        await provision(first.store, inprocess_hsm_client())
        for _ in range(CONNECTIONS):
            terminal = SimTerminal(TERMINAL_ID, MERCHANT_ID)
            await terminal.connect(first.port)
            terminals.append(terminal)
            assert (await terminal.sign_in()).message[39] == "00"
        assert first.server is not None and second.server is not None
        assert first.server.connections and second.server.connections
        assert len(first.server.connections) + len(second.server.connections) == CONNECTIONS
    finally:
        for terminal in terminals:
            await terminal.close()
        await second.stop()
        await first.stop()


async def test_second_listener_without_reuse_port_is_refused(tmp_path: Path) -> None:
    """Without the setting a second listener on a taken port fails to start (no silent
    sharing)."""
    first = Switch(switch_settings(tmp_path, node_id=1))
    await first.start()
    second = Switch(switch_settings(tmp_path, node_id=2, terminal_port=first.port))
    try:
        with pytest.raises(OSError):
            await second.start()
    finally:
        await second.stop()
        await first.stop()
