"""The switch warns at start, once, when keys are held in its process (in-process
HSM) or a zone key is a published TEST key; not with an HSM over TCP and own keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hsm_sim.server import HsmServer
from posp.hsm import HsmClient, TcpTransport
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.lab.zone_keys import TEST_ZAK_LMK, TEST_ZPK_LMK
from posp.network.settings import NetworkLinkSettings
from posp.store.api import Store
from posp.switch import Switch, warn_if_lab_keys

from .conftest import switch_settings

OWN_KEY = "U" + "1" * 32  # not a TEST key (never used: the network is off or not reached)


def lab_warnings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["log_level"] == "warning" and "labs only" in e["event"]]


async def test_an_in_process_hsm_logs_the_lab_warning_at_start(
    tmp_path: Path, store: Store
) -> None:
    with capture_logs() as logs:
        async with Switch(switch_settings(tmp_path), store=store, hsm=inprocess_hsm_client()):
            pass
    (warning,) = lab_warnings(logs)
    assert warning["in_process_hsm"] is True
    assert "held in the switch process" in warning["event"]


async def test_a_tcp_hsm_with_the_network_off_starts_without_the_warning(
    tmp_path: Path, store: Store, hsm_server: HsmServer
) -> None:
    hsm = HsmClient(TcpTransport("127.0.0.1", hsm_server.port, connections=1))
    with capture_logs() as logs:
        async with Switch(switch_settings(tmp_path), store=store, hsm=hsm):
            pass
    await hsm.close()
    assert lab_warnings(logs) == []


@pytest.mark.parametrize("test_key", ["zpk_lmk", "zak_lmk"])
def test_any_test_zone_key_logs_the_lab_warning(tmp_path: Path, test_key: str) -> None:
    keys = {"zmk_lmk": OWN_KEY, "zpk_lmk": OWN_KEY, "zak_lmk": OWN_KEY}
    keys[test_key] = TEST_ZPK_LMK if test_key == "zpk_lmk" else TEST_ZAK_LMK
    settings = switch_settings(tmp_path, network_enabled=True)
    settings = settings.model_copy(update={"network": NetworkLinkSettings(**keys)})
    hsm = HsmClient(TcpTransport("127.0.0.1", 1))  # never started: only its kind is read
    with capture_logs() as logs:
        warn_if_lab_keys(settings, hsm)
    (warning,) = lab_warnings(logs)
    assert warning["test_zone_values"] is True and warning["in_process_hsm"] is False
    own = settings.model_copy(
        update={"network": NetworkLinkSettings(**dict.fromkeys(keys, OWN_KEY))}
    )
    with capture_logs() as logs:
        warn_if_lab_keys(own, hsm)
    assert lab_warnings(logs) == []
