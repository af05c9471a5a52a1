"""Fleet statistics while running: what every exchange ended as, and how fast.

Invariants:

* Only exchanges of the load phase enter the tallies (``total``, per type, per
  step, the current window); the sign-in phase and the hold's echo probes are
  counted apart (``codes``, ``sign_ins``...), so a rate or a percentile is
  about the load the tester asked for.
* Latency percentiles are over answered exchanges only (approved or declined):
  a refused connection or a timeout is counted by class, never as a latency of
  the switch; ``by_class`` keeps the time to each outcome separately.
* A transaction's exchange is reported under the mix's name for it (generic:
  whatever names the mix has); sign-ins, reversals, settlements and batch
  uploads under their own kind, so the type rows add up to ``requests``.
* Every figure is a count, a histogram or a length of time, so two processes'
  statistics add up exactly (``add``) and serialise losslessly (``to_raw``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from terminals.latency import LatencyHistogram
from terminals.outcome import ANSWERED_CLASSES, ERROR_CLASSES, Event, Outcome, OutcomeClass
from terminals.outcome import classify as classify_outcome
from terminals.txn import TxnKind

#: Exchanges a terminal makes around the mix's transactions: reported under the kind.
AUX_KINDS = frozenset(
    {
        TxnKind.SIGN_IN,
        TxnKind.SIGN_OFF,
        TxnKind.ECHO,
        TxnKind.REVERSAL,
        TxnKind.SETTLEMENT,
        TxnKind.BATCH_UPLOAD,
        TxnKind.BATCH_UPLOAD_END,
    }
)
_ANSWERED = frozenset(c.value for c in ANSWERED_CLASSES)
_ERRORS = frozenset(c.value for c in ERROR_CLASSES)


@dataclass
class Tally:
    """Outcomes, response codes and the answered latency of one slice of the load."""

    outcomes: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def record(self, outcome_class: str, code: str | None, latency_s: float) -> None:
        self.outcomes[outcome_class] += 1
        if code is not None:
            self.codes[code] += 1
        if outcome_class in _ANSWERED:
            self.latency.record(latency_s)

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    @property
    def answered(self) -> int:
        return sum(self.outcomes[c] for c in _ANSWERED)

    @property
    def errors(self) -> int:
        return sum(self.outcomes[c] for c in _ERRORS)

    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def approval_rate(self) -> float:
        approved = self.outcomes[OutcomeClass.APPROVED.value]
        return approved / self.requests if self.requests else 0.0

    def add(self, other: Tally) -> None:
        self.outcomes.update(other.outcomes)
        self.codes.update(other.codes)
        self.latency.merge(other.latency)

    def to_raw(self) -> dict[str, Any]:
        return {
            "outcomes": dict(self.outcomes),
            "codes": dict(self.codes),
            "latency": self.latency.encode(),
        }

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Tally:
        return cls(
            Counter(raw["outcomes"]), Counter(raw["codes"]), LatencyHistogram.decode(raw["latency"])
        )


@dataclass
class StepTally:
    """One segment of the load shape: the offered ticks and what they became."""

    tally: Tally = field(default_factory=Tally)
    ticks: int = 0
    skipped: int = 0
    seconds: float = 0.0  # how long the step actually ran

    def add(self, other: StepTally) -> None:
        self.tally.add(other.tally)
        self.ticks += other.ticks
        self.skipped += other.skipped
        self.seconds = max(self.seconds, other.seconds)

    def to_raw(self) -> dict[str, Any]:
        raw = self.tally.to_raw()
        raw.update(ticks=self.ticks, skipped=self.skipped, seconds=self.seconds)
        return raw

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> StepTally:
        return cls(Tally.from_raw(raw), raw["ticks"], raw["skipped"], raw["seconds"])


#: Counters outside the tallies, summed across processes (``add``).
SUMMED = (
    "requests", "answers", "timeouts", "comms_errors", "mac_failures", "reversals_sent", "sign_ins",
    "settlements", "ticks", "skipped", "ramp_sign_ins", "held_connections",
    "dropped_connections", "probe_failures", "reconnects",
)  # fmt: skip
#: Lengths of time, the longest of the processes (they ran side by side).
LONGEST = ("sign_in_phase_s", "load_elapsed_recorded_s")
COUNTERS = ("codes", "transactions", "errors")


@dataclass
class FleetStats:
    """Mutable statistics the sessions update through ``record``."""

    total: Tally = field(default_factory=Tally)
    by_class: dict[str, LatencyHistogram] = field(default_factory=dict)
    by_type: dict[str, Tally] = field(default_factory=dict)
    steps: list[StepTally] = field(default_factory=list)
    window: Tally = field(default_factory=Tally)  # the current second (series, live view)
    # every phase (sign-in, hold probes, load): codes, and event names for the unanswered
    codes: Counter[str] = field(default_factory=Counter)
    transactions: Counter[str] = field(default_factory=Counter)  # mix names started
    errors: Counter[str] = field(default_factory=Counter)  # the fleet's own failures
    requests: int = 0
    answers: int = 0  # exchanges the switch answered, whatever the answer (every phase)
    timeouts: int = 0
    comms_errors: int = 0
    mac_failures: int = 0
    reversals_sent: int = 0
    sign_ins: int = 0
    settlements: int = 0
    ticks: int = 0  # open loop: transactions offered
    skipped: int = 0  # open loop: ticks that found no idle terminal
    sign_in_phase_s: float = 0.0
    ramp_sign_ins: int = 0
    held_connections: int = 0
    dropped_connections: int = 0
    probe_failures: int = 0
    reconnects: int = 0
    load_started: float | None = None
    load_stopped: float | None = None
    load_elapsed_recorded_s: float = 0.0  # set by stop_load; what a merged report keeps
    step_of: Callable[[float], int] | None = None  # load elapsed s -> step index

    def record(self, outcome: Outcome, latency_s: float, label: str | None = None) -> None:
        """One exchange's fate; ``label`` is the mix's name for a transaction."""
        self.requests += 1
        event = outcome.event
        self.codes[(outcome.response_code or "??") if event is Event.RESPONSE else event.value] += 1
        if event is Event.TIMEOUT:
            self.timeouts += 1
        elif event is Event.COMMS_ERROR:
            self.comms_errors += 1
        else:
            self.answers += 1
            if event is Event.MAC_FAILURE:
                self.mac_failures += 1
        kind = outcome.kind
        if kind is TxnKind.REVERSAL:
            self.reversals_sent += 1
        elif kind is TxnKind.SIGN_IN:
            self.sign_ins += 1
        if self.load_started is None or self.load_stopped is not None:
            return
        outcome_class = classify_outcome(outcome).value
        code = outcome.response_code if event is Event.RESPONSE else None
        self.total.record(outcome_class, code, latency_s)
        self.window.record(outcome_class, code, latency_s)
        if (hist := self.by_class.get(outcome_class)) is None:
            hist = self.by_class[outcome_class] = LatencyHistogram()
        hist.record(latency_s)
        name = kind.value if label is None or kind in AUX_KINDS else label
        if (tally := self.by_type.get(name)) is None:
            tally = self.by_type[name] = Tally()
        tally.record(outcome_class, code, latency_s)
        if self.step_of is not None:
            self.steps[self.step_of(time.perf_counter() - self.load_started)].tally.record(
                outcome_class, code, latency_s
            )

    @property
    def load_codes(self) -> Counter[str]:
        """Response codes of the load phase only."""
        return self.total.codes

    def start_load(self, step_count: int = 0) -> None:
        self.steps = [StepTally() for _ in range(step_count)]
        self.load_started = time.perf_counter()

    def stop_load(self) -> None:
        self.load_stopped = time.perf_counter()
        self.load_elapsed_recorded_s = self.load_elapsed_s

    @property
    def load_elapsed_s(self) -> float:
        if self.load_started is None:
            return self.load_elapsed_recorded_s
        return (self.load_stopped or time.perf_counter()) - self.load_started

    def take_window(self) -> Tally:
        """The tally since the last call (the current second), starting a new one."""
        window, self.window = self.window, Tally()
        return window

    def add(self, other: FleetStats) -> None:
        """Fold in another process's statistics (same shape of steps)."""
        self.total.add(other.total)
        for name, hist in other.by_class.items():
            self.by_class.setdefault(name, LatencyHistogram()).merge(hist)
        for name, tally in other.by_type.items():
            self.by_type.setdefault(name, Tally()).add(tally)
        while len(self.steps) < len(other.steps):
            self.steps.append(StepTally())
        for mine, theirs in zip(self.steps, other.steps, strict=False):
            mine.add(theirs)
        for name in COUNTERS:
            getattr(self, name).update(getattr(other, name))
        for name in SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in LONGEST:
            setattr(self, name, max(getattr(self, name), getattr(other, name)))

    def to_raw(self) -> dict[str, Any]:
        """Everything ``add`` needs, as JSON-ready values (histograms encoded)."""
        return {
            "total": self.total.to_raw(),
            "by_class": {name: hist.encode() for name, hist in self.by_class.items()},
            "by_type": {name: tally.to_raw() for name, tally in self.by_type.items()},
            "steps": [step.to_raw() for step in self.steps],
            **{name: dict(getattr(self, name)) for name in COUNTERS},
            **{name: getattr(self, name) for name in SUMMED + LONGEST},
        }

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> FleetStats:
        """The statistics ``to_raw`` wrote; KeyError/ValueError when it is not such."""
        stats = cls(
            total=Tally.from_raw(raw["total"]),
            by_class={n: LatencyHistogram.decode(h) for n, h in raw["by_class"].items()},
            by_type={n: Tally.from_raw(t) for n, t in raw["by_type"].items()},
            steps=[StepTally.from_raw(step) for step in raw["steps"]],
        )
        for name in COUNTERS:
            setattr(stats, name, Counter(raw[name]))
        for name in SUMMED + LONGEST:
            setattr(stats, name, raw[name])
        return stats
