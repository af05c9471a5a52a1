"""``posp up``: the whole stack in one process, demo provisioning and the demo run."""

from __future__ import annotations

import json

import pytest

from .conftest import Posp

EPHEMERAL = ("--hsm-port", "0", "--issuer-port", "0")


@pytest.fixture(autouse=True)
def ephemeral_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSP_TERMINAL_PORT", "0")
    monkeypatch.setenv("POSP_METRICS_PORT", "0")


def test_up_provisions_demo_runs_the_fleet_and_exits(posp: Posp) -> None:
    result = posp(
        "up", *EPHEMERAL, "--exit-after-demo", "--demo-seconds", "1", "--demo-terminals", "2"
    )
    assert result.code == 0, result.err
    for what in ("switch terminal port", "switch metrics", "HSM simulator", "issuer simulator"):
        assert what in result.out
    assert "sign ins" in result.out and "settlements" in result.out  # the fleet report
    fleet = json.loads((posp.data_dir / "demo-fleet.json").read_text())
    assert [t["terminal_id"] for t in fleet["terminals"]] == ["10000001", "10000002"]


def test_up_again_keeps_the_demo_terminals_and_their_keys(posp: Posp) -> None:
    args = ("up", *EPHEMERAL, "--no-demo", "--exit-after-demo", "--demo-terminals", "2")
    assert posp(*args).code == 0
    first = (posp.data_dir / "demo-fleet.json").read_text()
    assert posp(*args).code == 0
    assert (posp.data_dir / "demo-fleet.json").read_text() == first


def test_up_rejects_a_bad_port_naming_it(posp: Posp) -> None:
    result = posp("up", "--hsm-port", "70000", "--exit-after-demo")
    assert result.code == 2 and "--hsm-port" in result.err
