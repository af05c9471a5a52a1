"""The fleet at scale against the real switch in another process: 10,000
terminals each sign in and hold one long connection for 60 s, and none is
dropped.  Slow (run with ``make test-slow``); ``POSP_FLEET_SIZE`` and
``POSP_FLEET_HOLD_S`` shorten it.  Figures (sign-ins/s of the ramp-up, CPU,
RSS and fds per process) are printed and written to ``fleet-hold.json`` in
the test's directory (and to ``$POSP_FIGURES_OUT`` when set).
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

import pytest

from terminals.procstat import ProcessMeter
from tests.terminals.processes import LabStack

FLEET_SIZE = int(os.environ.get("POSP_FLEET_SIZE", "10000"))
HOLD_S = float(os.environ.get("POSP_FLEET_HOLD_S", "60"))
FD_HEADROOM = 256  # listener, store, logs, the odd probe


def _raise_nofile_for_children() -> tuple[int, int]:
    """Soft open-files limit up to the hard one; the switch inherits it (it does
    not raise its own), as does the fleet (which would raise its own anyway)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLEET_SIZE + FD_HEADROOM:
        pytest.fail(f"hard RLIMIT_NOFILE {hard} < {FLEET_SIZE + FD_HEADROOM} needed per process")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard


@pytest.mark.slow
@pytest.mark.timeout(HOLD_S + 600)
def test_switch_holds_every_terminal_connection_of_a_10k_fleet(tmp_path: Path) -> None:
    """Every terminal signs in, its connection stays open through the hold and
    answers an echo afterwards; the switch holds all of them at once."""
    previous = _raise_nofile_for_children()
    stack = LabStack(tmp_path)
    try:
        stack.switch_env(issuer_port=None, hsm_url="inprocess://")
        fleet_file = stack.provision_fleet(FLEET_SIZE)
        stack.start_switch()
        port = stack.processes[0].port
        args = ["--fleet-file", str(fleet_file), "--port", str(port), "--long-connections"]
        report = stack.run_fleet([*args, "--hold", str(HOLD_S), "--timeout-s", "30"])
    finally:
        stack.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, previous)
    figures = _figures(report)
    text = json.dumps(figures, indent=1)
    print(text)
    (tmp_path / "fleet-hold.json").write_text(text)
    if out := os.environ.get("POSP_FIGURES_OUT"):
        Path(out).write_text(text)
    assert report["sign_ins"] == FLEET_SIZE and report["response_codes"] == {"00": 2 * FLEET_SIZE}
    assert report["held_connections"] == FLEET_SIZE
    assert report["dropped_connections"] == 0
    assert report["probe_failures"] == 0 and report["reconnects"] == 0
    switch = next(p for p in report["processes"] if p["name"] == "posp-serve")
    assert switch["peak_open_fds"] >= FLEET_SIZE


def _phase_cpu(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """CPU (% of one core) per process during the ramp-up (from the switch's
    first accepted connections until it holds the whole fleet) and the hold."""
    meters: list[ProcessMeter] = report["meters"]
    switch = next(m for m in meters if m.name == "posp-serve")
    baseline = switch.samples[0].open_fds
    ramp_from = next(s.at_s for s in switch.samples if s.open_fds > baseline + 10)
    ramp_to = next(s.at_s for s in switch.samples if s.open_fds >= FLEET_SIZE)
    hold = (ramp_to + 1.0, ramp_to + HOLD_S - 1.0)
    return {
        m.name: {
            "ramp_up": round(m.cpu_percent_between(ramp_from - 0.5, ramp_to + 0.5), 1),
            "hold": round(m.cpu_percent_between(*hold), 1),
        }
        for m in meters
    }


def _figures(report: dict[str, Any]) -> dict[str, object]:
    keys = (
        "sign_ins",
        "sign_in_phase_s",
        "sign_ins_per_s",
        "held_connections",
        "dropped_connections",
        "probe_failures",
        "reconnects",
        "processes",
    )
    figures = {"fleet_size": FLEET_SIZE, "hold_s": HOLD_S, **{k: report[k] for k in keys}}
    figures["cpu_percent_by_phase"] = _phase_cpu(report)
    return figures
