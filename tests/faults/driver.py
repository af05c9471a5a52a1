"""Audited terminals: the real terminal state machine and session
(:mod:`terminals.machine`, :mod:`terminals.session`) buying with unique amounts, and
a JSON-lines record of everything they sent and saw.

Invariants:

* A purchase is recorded (terminal, trace, card index, amount) *before* it is sent;
  every outcome (purchase, 0400, sign-in) is recorded when the session settles it,
  with whether an answer came back at all.  Each line is flushed when written.
* The terminals behave as real ones: whatever they did not see approved stays a
  pending reversal, sent (by ``TerminalSession.prepare``) before the next
  transaction and, at the end, until a 0410 clears it.
* Amounts are unique in a run (``amount_minor = BASE + n``), so the issuer's
  transaction for a purchase is found by card and amount alone: the audit needs
  nothing from the switch.  No PAN is written: cards are named by their index.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import IO, Any, Final

from posp.lab.fleetfile import FleetTerminal
from terminals.cards import TerminalCard
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from terminals.outcome import Event, Outcome
from terminals.session import SessionOptions, TerminalSession

#: 1.00 CNY: far below the issuer's special amounts (994.04 dropped, 994.51 → 51).
AMOUNT_BASE_MINOR: Final = 100
#: While a terminal cannot reach the switch (it is being restarted), it waits this long
#: before trying again; pacing of a retry loop, not a synchronisation.
RETRY_PAUSE_S: Final = 0.2


class AuditLog:
    """Append-only JSON lines; one per terminal action (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class AuditedTerminal:
    """One terminal: a machine, its session, and the log it writes to."""

    def __init__(
        self, terminal_id: str, machine: TerminalMachine, options: SessionOptions, log: AuditLog
    ) -> None:
        self.terminal_id = terminal_id
        self.log = log
        self.session = TerminalSession(machine, options, on_outcome=self.on_outcome)

    @property
    def machine(self) -> TerminalMachine:
        return self.session.machine

    def on_outcome(self, outcome: Outcome, _latency_s: float) -> None:
        """Record how a request ended: ``sent`` false when a purchase never left (no
        connection; a 0400 that could not connect is not told apart), ``answered``
        when an answer of the right MTI and trace came."""
        not_sent = outcome.event is Event.COMMS_ERROR and outcome.detail == "not sent"
        self.log.write(
            {
                "ev": "outcome",
                "tid": self.terminal_id,
                "trace": outcome.trace,
                "kind": outcome.kind.value,
                "event": outcome.event.value,
                "sent": not not_sent,
                "answered": outcome.event in (Event.RESPONSE, Event.MAC_FAILURE),
                "code": outcome.response_code,
                "approved": outcome.approved,
            }
        )

    async def purchase(self, card_index: int, card: TerminalCard, amount_minor: int) -> Outcome:
        """Sign in / send a due reversal when needed, then one purchase (PIN or not)."""
        pin = card.pin if amount_minor % 2 else None

        def build(machine: TerminalMachine) -> bytes:
            frame = machine.purchase(card, amount_minor, pin=pin)
            assert machine.in_flight is not None
            self.log.write(
                {
                    "ev": "purchase",
                    "tid": self.terminal_id,
                    "trace": machine.in_flight.trace,
                    "card": card_index,
                    "amount": amount_minor,
                    "pin": pin is not None,
                }
            )
            return frame

        return await self.session.transact(build)

    async def clear_reversal(self, deadline_s: float) -> bool:
        """Send the pending reversal until a 0410 clears it (or ``deadline_s`` of the
        loop clock passes); True when nothing is left to reverse."""
        loop = asyncio.get_running_loop()
        while self.machine.reversal_due and loop.time() < deadline_s:
            blocking = await self.session.prepare()
            if blocking is not None and self.machine.reversal_due:
                await asyncio.sleep(RETRY_PAUSE_S)
        await self.session.close()
        return not self.machine.reversal_due


@dataclass
class AuditedFleet:
    """Terminals of one run buying from random cards until told to stop."""

    log: AuditLog
    cards: list[TerminalCard]
    terminals: list[AuditedTerminal] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    #: After a purchase it got no answer for, a terminal idles up to this long (drawn
    #: at random) before its next sale, and so before its 0400: the clerk's pause,
    #: letting the switch's own 0420 go first in some cases and not in others.
    idle_after_unanswered_s: float = 0.0
    done: int = 0  # purchases settled so far (answered, timed out or failed)
    approved: int = 0  # of which approved
    _amounts: count[int] = field(default_factory=lambda: count(AMOUNT_BASE_MINOR))

    @classmethod
    def build(
        cls,
        log: AuditLog,
        cards: list[TerminalCard],
        fleet: list[FleetTerminal],
        ports: list[int],
        *,
        response_timeout_s: float,
        seed: int,
    ) -> AuditedFleet:
        """Terminal ``i`` of ``fleet`` talks to ``ports[i % len(ports)]``."""
        audited = cls(log, cards, rng=random.Random(seed))
        for index, entry in enumerate(fleet):
            config = TerminalConfig(entry.terminal_id, entry.merchant_id, entry.tmk)
            options = SessionOptions(
                port=ports[index % len(ports)],
                connect_timeout_s=2.0,
                response_timeout_s=response_timeout_s,
                long_connection=True,
            )
            machine = TerminalMachine(config)
            audited.terminals.append(AuditedTerminal(entry.terminal_id, machine, options, log))
        return audited

    def next_purchase(self) -> tuple[int, TerminalCard, int]:
        index = self.rng.randrange(len(self.cards))
        return index, self.cards[index], next(self._amounts)

    async def run_terminal(self, terminal: AuditedTerminal, stop: asyncio.Event) -> None:
        while not stop.is_set():
            outcome = await terminal.purchase(*self.next_purchase())
            self.done += 1
            self.approved += outcome.approved
            if outcome.event is Event.COMMS_ERROR and not outcome.approved:
                await asyncio.sleep(RETRY_PAUSE_S)  # the switch is down: try again soon
            elif outcome.reversal_queued and self.idle_after_unanswered_s:
                await asyncio.sleep(self.rng.uniform(0, self.idle_after_unanswered_s))

    async def after_purchases(
        self, count: int, *, approved: bool = False, timeout_s: float = 120.0
    ) -> None:
        """Return once ``count`` more purchases have settled (``approved``: been
        approved): faults strike at moments measured in work done, not in time."""

        def progress() -> int:
            return self.approved if approved else self.done

        target = progress() + count
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while progress() < target:
            if loop.time() > deadline:
                raise AssertionError(f"only {progress()} of {target} purchases in {timeout_s} s")
            await asyncio.sleep(0.02)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self.run_terminal(t, stop) for t in self.terminals))

    async def clear_reversals(self, timeout_s: float) -> list[str]:
        """Every terminal sends its pending reversal until answered; the ids of those
        still holding one at the deadline."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        done = await asyncio.gather(*(t.clear_reversal(deadline) for t in self.terminals))
        return [t.terminal_id for t, ok in zip(self.terminals, done, strict=True) if not ok]

    async def close(self) -> None:
        for terminal in self.terminals:
            await terminal.session.close()


def fleet_cards(rows: list[dict[str, str]]) -> list[TerminalCard]:
    return [TerminalCard(r["pan"], r["expiry"], r["pin"]) for r in rows]
