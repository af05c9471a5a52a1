"""What a fleet run is asked to do (``FleetConfig``), how it is stopped from
outside (``FleetControl``) and the parameters its report records.

Invariants: ``concurrency`` never exceeds the fleet (one request in flight per
terminal: its trace numbers must stay unique); the recorded parameters are
plain JSON values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import posp
from posp.lab.fleetfile import FleetTerminal
from terminals.cards import TerminalCard
from terminals.fleet_software import FleetSoftware
from terminals.fleet_stats import FleetStats
from terminals.loadshape import LoadShape
from terminals.mix import DEFAULT_MIX, parse_mix
from terminals.series import SecondRow


@dataclass
class FleetControl:
    """Stop requests from outside (the CLI's signal handlers)."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    abort: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None

    def request_stop(self, reason: str) -> None:
        """First call: stop starting work.  Second: cancel what is in flight."""
        if self.stop.is_set():
            self.abort.set()
            return
        self.reason = reason
        self.stop.set()


@dataclass
class FleetConfig:
    """What to run.  ``rate`` (a constant shape) or ``shape`` picks the open loop,
    else the loop is closed (``concurrency`` workers, default one per terminal);
    ``duration_s``, ``count`` and a finite shape bound the run (none = 10 s)."""

    terminals: list[FleetTerminal]
    cards: list[TerminalCard]
    host: str = "127.0.0.1"
    port: int = 5800
    rate: float | None = None
    shape: LoadShape | None = None
    concurrency: int | None = None
    duration_s: float | None = None
    count: int | None = None
    mix: dict[str, int] = field(default_factory=lambda: parse_mix(DEFAULT_MIX))
    pin_ratio: float = 0.5
    ic_ratio: float = 0.3
    settle_every_s: float | None = None
    long_connections: bool = False
    sign_in_variant: str = "003"
    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    ramp_up_s: float = 0.0
    hold_s: float | None = None
    seed: int | None = None
    progress: Callable[[FleetStats], None] | None = None
    progress_interval_s: float = 0.5
    on_second: Callable[[SecondRow, FleetStats], None] | None = None
    on_phase: Callable[[str], None] | None = None  # "sign-in started", "load started"...
    #: Software rollouts: each terminal's TUF updater and offer lookup (--tms-url).
    software: FleetSoftware | None = None
    #: Open loop split over processes (``--processes``): process i of N runs the
    #: shape at 1/N of the rate with ``tick_phase = i/N``, so that it offers the
    #: whole fleet's ticks i, i+N, i+2N, … and the processes together offer
    #: exactly the shape's ticks (each rounding up on its own would add up to N-1).
    tick_phase: float = 0.0
    #: Every terminal's first trace (F11, 1..999999); None: a random one per
    #: terminal.  Two runs in one batch on one switch set it to keep their trace
    #: ranges apart (a trace sent again in the batch is a duplicate: 94).
    first_trace: int | None = None

    @property
    def load_shape(self) -> LoadShape | None:
        if self.shape is not None:
            return self.shape
        return None if self.rate is None else LoadShape.constant(self.rate)


def parameters_of(config: FleetConfig, started_at: datetime) -> dict[str, Any]:
    """The run's parameters as the JSON report records them."""
    shape = config.load_shape
    return {
        "version": posp.__version__,
        "started_at": started_at.isoformat(timespec="seconds"),
        "target": f"{config.host}:{config.port}",
        "terminals": len(config.terminals),
        "loop": "closed" if shape is None else "open",
        "rate": config.rate,
        "shape": (
            [[s.start_rate, s.end_rate, s.seconds] for s in shape.segments]
            if shape is not None and shape.stepped
            else None
        ),
        "concurrency": config.concurrency,
        "duration_s": config.duration_s,
        "count": config.count,
        "mix": config.mix,
        "pin_ratio": config.pin_ratio,
        "ic_ratio": config.ic_ratio,
        "seed": config.seed,
        "long_connections": config.long_connections,
        "timeout_s": config.timeout_s,
        "settle_every_s": config.settle_every_s,
        "hold_s": config.hold_s,
    }


def check_concurrency(concurrency: int, terminals: int) -> None:
    """ValueError when ``concurrency`` asks for more requests in flight than terminals."""
    if concurrency > terminals:
        raise ValueError(
            f"--concurrency {concurrency} exceeds the fleet's {terminals} terminals: a terminal"
            " has one request in flight (its trace numbers must stay unique); use a larger"
            f" fleet file or --concurrency {terminals} or less"
        )
