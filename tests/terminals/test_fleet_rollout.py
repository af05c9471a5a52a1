"""posp-fleet drives a staged software rollout (issue 17): every terminal of the run
carries a TUF updater; header digit 6 sends it to the TMS endpoint for its offer,
it verifies and installs the package and reports it; the waves advance on those
reports, and a tampered package is installed by nobody."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posp.lab.fleetfile import FleetTerminal
from posp.tms.server import serve
from posp.tms.service import TerminalManagement
from terminals.fleet import FleetConfig, run_fleet
from terminals.fleet_software import FleetSoftware, FleetSoftwareError, read_trusted_root
from tests.stackfixtures import MERCHANT_ID, TMK_HEX, Stack
from tests.tms.lab import ACQUIRER, MODEL, Lab

TERMINALS = 12


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack.running(tmp_path) as running:
        yield running


@pytest.fixture
async def endpoint(stack: Stack, tmp_path: Path) -> AsyncIterator[tuple[Lab, str]]:
    """A TUF repository served by the real TMS endpoint, offers from the switch."""
    tms = management(stack)
    lab = Lab.create(tmp_path / "tuf")
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    server = asyncio.create_task(
        serve(
            lab.repo, "127.0.0.1", 0, offers=tms.rollouts.offer, started=bound.set_result, stop=stop
        )
    )
    yield lab, f"http://127.0.0.1:{await asyncio.wait_for(bound, 10)}"
    stop.set()
    await server


def management(stack: Stack) -> TerminalManagement:
    assert stack.switch is not None and stack.switch.pipeline is not None
    tms = stack.switch.pipeline.services.tms
    assert tms is not None
    return tms


async def fleet_of(stack: Stack, group: str) -> list[FleetTerminal]:
    tms = management(stack)
    terminals = []
    for n in range(TERMINALS):
        terminal_id = f"2000{n:04d}"
        await stack.provision(terminal_id)
        await tms.tms.set_group(terminal_id, group)
        terminals.append(FleetTerminal(terminal_id, MERCHANT_ID, bytes.fromhex(TMK_HEX)))
    tms.forget()
    return terminals


async def drive(
    stack: Stack, terminals: list[FleetTerminal], software: FleetSoftware, until_version: str
) -> None:
    """Fleet runs (a few balance inquiries per terminal each) until every terminal
    runs ``until_version`` or the rollout can give no more (at most 12 runs)."""
    assert stack.switch is not None
    config = FleetConfig(
        terminals=terminals,
        cards=stack.cards,
        port=stack.switch.port,
        count=TERMINALS * 3,
        mix={"balance": 1},
        long_connections=True,
        software=software,
    )
    for _ in range(12):
        await run_fleet(config)
        if software.versions().get(until_version) == TERMINALS or software.refusals():
            return


async def test_a_fleet_installs_a_rollout_wave_by_wave(
    stack: Stack, endpoint: tuple[Lab, str], tmp_path: Path
) -> None:
    lab, url = endpoint
    terminals = await fleet_of(stack, "shops")
    target = lab.publish("V2.0")
    tms = management(stack)
    rollout = await tms.rollouts.start("shops", target, "V2.0", (25.0, 100.0), 5.0)
    tms.forget()
    software = FleetSoftware(
        url, lab.built_in_root, tmp_path / "sw", model=MODEL, acquirer_id=ACQUIRER
    )
    await drive(stack, terminals, software, "V2.0")
    assert software.versions() == {"V2.0": TERMINALS}
    assert software.refusals() == {}
    done = await tms.tms.rollout(rollout.id)
    assert done is not None and done.state == "done"
    for terminal in terminals:  # every terminal's version is queryable at the switch
        known = await tms.tms.terminal(terminal.terminal_id)
        assert known is not None and known.app_version == "V2.0"


async def test_a_tampered_package_is_installed_by_no_terminal_and_halts_the_rollout(
    stack: Stack, endpoint: tuple[Lab, str], tmp_path: Path
) -> None:
    lab, url = endpoint
    terminals = await fleet_of(stack, "kiosks")
    target = lab.publish("V3.0")
    for path in (lab.repo.targets_dir / MODEL).glob("*V3.0*"):
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF  # a compromised distribution server changed the bytes
        path.write_bytes(bytes(data))
    tms = management(stack)
    rollout = await tms.rollouts.start("kiosks", target, "V3.0", (100.0,), 5.0)
    tms.forget()
    software = FleetSoftware(
        url, lab.built_in_root, tmp_path / "sw", model=MODEL, acquirer_id=ACQUIRER
    )
    await drive(stack, terminals, software, "V3.0")
    assert software.versions() == {"V1.0": TERMINALS}
    assert set(software.refusals()) == {"验证签名失败:tampered"}
    halted = await tms.tms.rollout(rollout.id)
    assert halted is not None and halted.state == "halted"


def test_a_root_file_that_is_not_tuf_root_metadata_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "root.json"
    bad.write_text('{"signed": {"_type": "targets"}}')
    with pytest.raises(FleetSoftwareError, match="--tms-root"):
        read_trusted_root(bad)
    with pytest.raises(FleetSoftwareError, match="--tms-root"):
        read_trusted_root(tmp_path / "missing.json")
