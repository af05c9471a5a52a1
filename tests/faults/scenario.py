"""Steps shared by the fault tests: bring the stack up, wait on events (never on
time), and end with the audit.

Invariants: blocking process work (start, kill, wait for a port) runs in a worker
thread, so a fault proxy living on the test's event loop keeps serving meanwhile;
every wait polls an observable event with a deadline and fails naming it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.faults.audit import (
    AuditReport,
    audit,
    read_issuer_books,
    read_reversal_lines,
    wait_switch_settled,
)
from tests.faults.driver import AuditedFleet, AuditLog, fleet_cards, read_log
from tests.faults.procs import FaultStack

POLL_S = 0.05


async def until(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``check()`` (run in a thread: it may do blocking I/O) until truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await asyncio.to_thread(check):
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(POLL_S)


def issuer_booked(db: Path, pan: str, amount_minor: int) -> bool:
    """The issuer committed a transaction (any state) for this card and amount."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        row = conn.execute(
            "SELECT 1 FROM txns WHERE pan = ? AND amount_minor = ?", (pan, amount_minor)
        ).fetchone()
    return row is not None


@dataclass
class Run:
    """One run: the stack, the audited terminals and their log."""

    stack: FaultStack
    fleet: AuditedFleet
    log: AuditLog

    @property
    def store_url(self) -> str:
        return self.stack.switch_env(self.stack.switch_names[0])["POSP_STORE_URL"]

    async def wait_linked(self) -> None:
        """Each switch instance has its network link up: a balance inquiry through a
        terminal of each instance is answered with something other than 91."""
        ports = {self.stack.ports[n] for n in self.stack.switch_names}
        for port in ports:
            terminal = next(t for t in self.fleet.terminals if t.session.options.port == port)

            async def answered(terminal: Any = terminal) -> bool:
                outcome = await terminal.session.transact(lambda m: m.balance(self.fleet.cards[0]))
                return outcome.response_code not in (None, "91")

            deadline = asyncio.get_running_loop().time() + 30.0
            while not await answered():
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"switch on port {port} never linked to the issuer")
                await asyncio.sleep(0.1)

    async def finish(self, *, settle_timeout_s: float = 60.0) -> AuditReport:
        """Terminals clear their reversals, the switch settles, the issuer finishes
        what it received and stops; then the audit."""
        stack = self.stack
        left = await self.fleet.clear_reversals(timeout_s=60.0)
        assert not left, f"terminals still holding a reversal: {left}"
        await self.fleet.close()
        residue = await wait_switch_settled(self.store_url, settle_timeout_s)
        await until(lambda: stack.control("/traffic")["in_progress"] == 0, "issuer idle")
        await asyncio.to_thread(stack.stop, "issuer")
        self.log.close()
        report = audit(
            read_log(self.log.path),
            stack.cards,
            read_issuer_books(stack.issuer_db),
            read_reversal_lines(stack.issuer_logs),
            stack.faults,
            residue,
        )
        print(f"\naudit {stack.run_dir.name}: {report.summary()}")
        return report


async def start_run(
    stack: FaultStack,
    terminals: int,
    *,
    response_timeout_s: float = 10.0,
    seed: int = 0,
    hsm: bool = False,
) -> Run:
    """HSM (optional), issuer, ``terminals`` provisioned, every switch, linked."""
    if hsm:
        await asyncio.to_thread(stack.start_hsm)
    await asyncio.to_thread(stack.start_issuer)
    fleet_file = await asyncio.to_thread(stack.provision, terminals)
    for name in stack.switch_names:
        await asyncio.to_thread(stack.start_switch, name)
    log = AuditLog(stack.run_dir / "terminals.jsonl")
    ports = [stack.ports[n] for n in stack.switch_names]
    fleet = AuditedFleet.build(
        log,
        fleet_cards(stack.cards),
        fleet_file,
        ports,
        response_timeout_s=response_timeout_s,
        seed=seed,
    )
    run = Run(stack, fleet, log)
    await run.wait_linked()
    return run
