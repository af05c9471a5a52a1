"""The fleet's own cost per transaction (no sockets): build a purchase with
PIN (encode, PIN block, MAC) and settle it with its answer (decode, MAC
verify, journal), on one core.  The fleet must not be the bottleneck at
1,500-3,000 tx/s; this prints how many such round trips one core does.

A full-stack fleet run (switch + HSM + issuer) will be added here by the lead.
"""

from __future__ import annotations

import asyncio
import copy
import time

from terminals.cards import TerminalCard
from terminals.config import TerminalConfig
from terminals.fleet import FleetConfig, run_fleet
from terminals.fleet_report import FleetReport
from terminals.fleetfile import FleetTerminal
from terminals.machine import TerminalMachine
from tests.terminals.fakeswitch import TMK, FakeSwitch, serve

CARD = TerminalCard("6225880000000001", "2812", "123456")
ROUNDS = 5000


def _signed_in() -> TerminalMachine:
    machine = TerminalMachine(TerminalConfig("12345678", "123456789012345", TMK))
    switch = FakeSwitch()
    answer = switch.answer(machine.sign_in("003")[2:])
    assert answer is not None and machine.accept(answer).approved
    return machine


async def _fleet_against_fake_switch() -> FleetReport:
    server = await serve(FakeSwitch())
    port = server.sockets[0].getsockname()[1]
    fleet = [FleetTerminal(f"{10000000 + i}", "898100000000001", TMK) for i in range(50)]
    config = FleetConfig(
        terminals=fleet, cards=[CARD], port=port, duration_s=3.0, long_connections=True, seed=1
    )
    try:
        return await run_fleet(config)
    finally:
        server.close()
        await server.wait_closed()


def main() -> None:
    template = _signed_in()
    # Untimed: the answers the switch would give, precomputed by a twin machine.
    twin = TerminalMachine(template.config, copy.deepcopy(template.state))
    switch = FakeSwitch()
    answers = []
    for _ in range(ROUNDS):
        answer = switch.answer(twin.purchase(CARD, 1234, pin="123456")[2:])
        assert answer is not None
        twin.accept(answer)
        answers.append(answer)

    machine = TerminalMachine(template.config, copy.deepcopy(template.state))
    started = time.perf_counter()
    build_s = 0.0
    for answer in answers:
        t0 = time.perf_counter()
        machine.purchase(CARD, 1234, pin="123456")
        build_s += time.perf_counter() - t0
        if not machine.accept(answer).approved:
            raise RuntimeError("benchmark answer was not accepted")
    elapsed_s = time.perf_counter() - started
    print(f"purchase with PIN, build + parse: {ROUNDS / elapsed_s:,.0f} round trips/s on one core")
    parse_s = elapsed_s - build_s
    print(f"  build only: {ROUNDS / build_s:,.0f}/s; parse only: {ROUNDS / parse_s:,.0f}/s")
    report = asyncio.run(_fleet_against_fake_switch())
    print(
        f"fleet + fake switch in one process (50 terminals, long connections, closed loop): "
        f"{report.requests_per_s:,.0f} req/s, p99 {report.latency_ms['p99']:.1f} ms"
    )
    print("  (shared 2-core machine, other engineers' jobs running: figures are pessimistic)")


if __name__ == "__main__":
    main()
