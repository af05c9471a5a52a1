"""The conformance catalogue's machinery, run against the fake switch."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from posp.lab.fleetfile import FleetTerminal
from terminals.cards import TerminalCard
from terminals.conformance import ConformanceTarget, Status, context_for, run_catalogue
from terminals.scenarios import CATALOGUE
from terminals.tms_scenarios import TMS_CATALOGUE
from tests.terminals.fakeswitch import TMK, FakeSwitch, serve

CARDS = [TerminalCard("6225880000000001", "2812", "123456")]
FLEET = [FleetTerminal(f"1000000{i}", f"89810000000000{i}", TMK) for i in range(1, 4)]


@pytest.fixture
async def target() -> AsyncIterator[ConformanceTarget]:
    switch = FakeSwitch()
    server = await serve(switch)
    port = server.sockets[0].getsockname()[1]
    yield ConformanceTarget("127.0.0.1", port, FLEET, CARDS, timeout_s=2.0, drop_timeout_s=0.2)
    server.close()
    await server.wait_closed()


async def test_scenarios_a_compliant_fake_switch_supports_pass(target: ConformanceTarget) -> None:
    names = [
        "sign_in_001",
        "sign_in_003",
        "sign_in_004",
        "purchase_pin",
        "purchase_no_pin",
        "settlement_balanced",
        "batch_upload_resumed",
    ]
    results = await run_catalogue(target, names)
    assert [(r.name, r.status, r.reason) for r in results] == [(n, Status.PASS, "") for n in names]


async def test_runs_one_scenario_at_a_time_continue_the_same_terminals(
    target: ConformanceTarget,
) -> None:
    """As the catalogue test against the real stack runs them (one call each): a
    fresh machine per call would start at a random trace and could repeat one an
    earlier call journaled in the same batch (the switch answers 94)."""
    [first] = await run_catalogue(target, "purchase_pin")
    machine = context_for(target).machine(0)
    after_first = machine.state.last_trace
    [second] = await run_catalogue(target, "purchase_pin")
    assert first.status is second.status is Status.PASS
    assert context_for(target).machine(0) is machine
    assert machine.state.last_trace > after_first  # went on from where it was
    other = ConformanceTarget(target.host, target.port, FLEET, CARDS)
    assert context_for(other).machine(0) is not machine  # another target: its own


async def test_a_missing_rule_fails_with_the_reason(target: ConformanceTarget) -> None:
    """The fake switch approves wrong PINs: the scenario fails and says why."""
    [result] = await run_catalogue(target, "wrong_pin")
    assert result.status is Status.FAIL
    assert result.reason == "purchase with a wrong PIN: expected 55, got 00"


async def test_pending_features_are_reported_not_run(target: ConformanceTarget) -> None:
    pending = ConformanceTarget(
        target.host, target.port, FLEET, CARDS, pending=frozenset({"settlement"})
    )
    results = await run_catalogue(pending, ["settlement_balanced", "settlement_unbalanced"])
    assert {r.status for r in results} == {Status.PENDING}


async def test_unknown_scenario_names_are_refused(target: ConformanceTarget) -> None:
    with pytest.raises(ValueError, match="nope"):
        await run_catalogue(target, ["nope"])


def test_catalogue_names_are_unique_and_cover_the_brief() -> None:
    names = [s.name for s in CATALOGUE]
    assert len(names) == len(set(names)) == 44 + len(TMS_CATALOGUE)  # + 9 chip, 4 risk
