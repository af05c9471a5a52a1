"""The conformance catalogue's machinery: target, scenarios, results, runner.

A scenario is a name, a description, the switch feature it exercises (a
tag) and an async run function that raises ``ScenarioFailed`` with the
reason when the switch does not behave.  ``run_catalogue`` runs them in
order against one target.

What the target switch must have provisioned (``ConformanceTarget``):

* at least 3 terminals of the fleet file, enabled, each with its merchant and
  TMK (terminal 1: financial scenarios; terminal 2: settlement and batch
  upload; terminal 3: sign-off / not-signed-in);
* terminal id ``99999999`` and merchant ``899999999999999`` NOT provisioned
  (unknown terminal -> 97, wrong merchant -> 03);
* the issuer simulator with its demo rules (amount 99404 is dropped, 99451
  declined 51) and a cards file with at least one active CUP card and its PIN;
  the transfer scenarios also need a second active CNY card and one active card
  kept in another currency (the demo file has both), and the switch's transfer
  cap (``transfer_cap_minor``, default 5,000,000 fen) for terminal 1.

Invariants: each provisioned terminal keeps one ``TerminalMachine`` for the
whole run and every later run against the same ``ConformanceTarget`` (trace
and batch continue across scenarios, as on a real terminal, also when a test
runs the scenarios one call each); traces start at a random point so that
repeated processes do not collide with the switch's duplicate check; a scenario whose feature tag is
pending is reported PENDING, never silently skipped.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from posp.lab.fleetfile import FleetTerminal
from terminals.cards import TerminalCard
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from terminals.outcome import Outcome
from terminals.session import SessionOptions, TerminalSession

UNKNOWN_TERMINAL_ID = "99999999"
UNKNOWN_MERCHANT_ID = "899999999999999"
MIN_TERMINALS = 3
#: Features whose scenarios change the switch's configuration through ``operator``.
OPERATOR_FEATURES = frozenset({"tms"})


class Status(Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    PENDING = "PENDING"


class ScenarioFailed(Exception):
    """The switch did not behave as the scenario expects; the message says how."""


@dataclass(frozen=True)
class ConformanceTarget:
    """The switch under test and what it has provisioned."""

    host: str
    port: int
    terminals: list[FleetTerminal]
    cards: list[TerminalCard]
    timeout_s: float = 10.0
    drop_timeout_s: float = 3.0  # response timeout for the dropped-answer scenario
    sign_in_variant: str = "003"
    transfer_cap_minor: int = 5_000_000  # the switch's single-transfer cap for terminal 1
    pending: frozenset[str] = frozenset()
    #: The switch operator's side for the terminal-management scenarios
    #: (``terminals.tms_scenarios.TmsOperator``); None reports them PENDING.
    operator: Any = None
    #: The provisioned terminals' machines, kept across every run against this
    #: target (``context_for``): a terminal goes on from its last trace, as a real
    #: one does.  A fresh machine per run starts at a random trace, which could
    #: repeat one an earlier run journaled in the same batch (answered 94).
    machines: dict[int, TerminalMachine] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    feature: str
    status: Status
    reason: str = ""
    duration_s: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "feature": self.feature,
            "status": self.status.value,
            "reason": self.reason,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class ScenarioContext:
    """What a scenario works with: persistent terminals and the test cards."""

    target: ConformanceTarget
    machines: dict[int, TerminalMachine] = field(default_factory=dict)

    def machine(self, index: int) -> TerminalMachine:
        """The persistent machine of provisioned terminal ``index`` (0-based)."""
        if index not in self.machines:
            t = self.target.terminals[index]
            machine = TerminalMachine(TerminalConfig(t.terminal_id, t.merchant_id, t.tmk))
            machine.state.last_trace = random.randint(1, 900_000)
            self.machines[index] = machine
        return self.machines[index]

    def session(
        self, machine: TerminalMachine, *, timeout_s: float | None = None
    ) -> TerminalSession:
        options = SessionOptions(
            host=self.target.host,
            port=self.target.port,
            response_timeout_s=timeout_s or self.target.timeout_s,
            connect_timeout_s=self.target.timeout_s,
            sign_in_variant=self.target.sign_in_variant,
        )
        return TerminalSession(machine, options)

    def terminal(self, index: int) -> TerminalSession:
        return self.session(self.machine(index))

    def stranger(self, *, terminal_id: str | None = None) -> TerminalMachine:
        """A machine not tied to the provisioned set (unknown terminal cases)."""
        t = self.target.terminals[0]
        config = TerminalConfig(terminal_id or t.terminal_id, t.merchant_id, t.tmk)
        machine = TerminalMachine(config)
        machine.state.last_trace = random.randint(1, 900_000)
        return machine

    @property
    def card(self) -> TerminalCard:
        """An active domestic card (falls back to any active card)."""
        active = [c for c in self.target.cards if c.active]
        if not active:
            raise ScenarioFailed("the cards file has no active card")
        return next((c for c in active if c.card_org == "CUP"), active[0])


def expect_code(outcome: Outcome, code: str, step: str) -> Outcome:
    """Raise ScenarioFailed unless ``outcome`` is a response with 39 = ``code``."""
    if outcome.response_code != code:
        got = outcome.response_code or outcome.event.value
        detail = f" ({outcome.detail})" if outcome.detail else ""
        raise ScenarioFailed(f"{step}: expected {code}, got {got}{detail}")
    return outcome


def expect_approved(outcome: Outcome, step: str) -> Outcome:
    expect_code(outcome, "00", step)
    if not outcome.approved:
        raise ScenarioFailed(f"{step}: 00 but not accepted ({outcome.detail or 'MAC?'})")
    return outcome


ScenarioRun = Callable[[ScenarioContext], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    feature: str
    run: ScenarioRun


async def run_scenario(scenario: Scenario, ctx: ScenarioContext) -> ScenarioResult:
    if scenario.feature in ctx.target.pending:
        return ScenarioResult(scenario.name, scenario.feature, Status.PENDING, "feature pending")
    if scenario.feature in OPERATOR_FEATURES and ctx.target.operator is None:
        reason = "needs the operator's side (parameters, CAPK/AID, rollouts)"
        return ScenarioResult(scenario.name, scenario.feature, Status.PENDING, reason)
    started = time.perf_counter()
    try:
        await scenario.run(ctx)
    except ScenarioFailed as exc:
        status, reason = Status.FAIL, str(exc)
    except Exception as exc:  # a crash in a scenario is a failure with its reason
        status, reason = Status.FAIL, f"{type(exc).__name__}: {exc}"
    else:
        status, reason = Status.PASS, ""
    return ScenarioResult(
        scenario.name, scenario.feature, status, reason, time.perf_counter() - started
    )


async def run_catalogue(
    target: ConformanceTarget, only: str | list[str] | None = None
) -> list[ScenarioResult]:
    """Run the catalogue (or the scenarios named in ``only``) against ``target``."""
    from terminals.scenarios import CATALOGUE

    if len(target.terminals) < MIN_TERMINALS:
        raise ValueError(f"conformance needs at least {MIN_TERMINALS} provisioned terminals")
    names = [only] if isinstance(only, str) else only
    chosen = [s for s in CATALOGUE if names is None or s.name in names]
    if names is not None and len(chosen) != len(set(names)):
        unknown = sorted(set(names) - {s.name for s in CATALOGUE})
        raise ValueError(f"unknown scenario(s): {', '.join(unknown)}")
    ctx = context_for(target)
    return [await run_scenario(scenario, ctx) for scenario in chosen]


def context_for(target: ConformanceTarget) -> ScenarioContext:
    """A run's context: the target's terminals carry on from earlier runs."""
    return ScenarioContext(target, target.machines)
