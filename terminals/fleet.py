"""The fleet runner: many simulated terminals driving a switch.

``run_fleet(config)`` signs every terminal in (spread over the ramp-up), then
runs transactions open loop (a load shape: a constant ``rate``, steps or a
ramp; one new transaction per tick on an idle terminal) or closed loop
(``concurrency`` workers), for a duration, a count or the shape's length,
with periodic settlement, and returns a ``FleetReport``.  With ``hold_s``
(long connections) the fleet first holds every signed-in connection open and
idle for that long, counting connections the switch drops, then probes each
with an echo; the load phase follows only when a duration or count is given.

Invariants: a terminal has at most one request in flight (idle terminals wait
in a queue), so ``concurrency`` cannot exceed the fleet (a terminal's trace
numbers must stay unique); the open loop never queues work it cannot start —
a tick with no idle terminal is counted as ``skipped``; a fleet none of whose
sign-ins got an answer runs no load (the switch is unreachable); a stop
request (``FleetControl``: SIGINT/SIGTERM in the CLI) ends the current phase,
lets in-flight requests finish within their own timeout and still reports; a
second request cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import resource
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from terminals.config import TerminalConfig
from terminals.fleet_config import (
    FleetConfig,
    FleetControl,
    check_concurrency,
    parameters_of,
)
from terminals.fleet_report import FleetReport
from terminals.fleet_stats import FleetStats
from terminals.loadshape import LoadShape
from terminals.machine import TerminalMachine, TerminalStateError
from terminals.mix import MixSettings, TxnPicker
from terminals.outcome import Outcome
from terminals.series import SecondRow
from terminals.session import SessionOptions, TerminalSession
from terminals.state import MAX_TRACE

SIGN_IN_PARALLELISM = 256
HOLD_SAMPLE_S = 1.0  # how often the hold phase counts open connections
#: A millionth of a tick: how far the open loop's due count may be off by float rounding.
_TICK_EPS = 1e-6
OPEN_LOOP_WAKE_S = 0.002  # the open loop's shortest sleep: due ticks start together
OPEN_LOOP_MAX_SLEEP_S = 0.05  # and its longest (a slow or rising rate, a stop request)
DEFAULT_DURATION_S = 10.0

__all__ = ["FleetConfig", "FleetControl", "FleetReport", "run_fleet"]


def raise_nofile_limit() -> int:
    """Raise the open-files soft limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _Fleet:
    """The running fleet: sessions, idle queue, stats."""

    def __init__(self, config: FleetConfig, control: FleetControl | None = None) -> None:
        if not config.terminals:
            raise ValueError("the fleet needs at least one terminal")
        if config.first_trace is not None and not 1 <= config.first_trace <= MAX_TRACE:
            raise ValueError(f"first_trace {config.first_trace}: a trace is 1..{MAX_TRACE}")
        if config.concurrency is not None:
            check_concurrency(config.concurrency, len(config.terminals))
        self.config = config
        self.control = control or FleetControl()
        self.stats = FleetStats()
        options = SessionOptions(
            host=config.host,
            port=config.port,
            connect_timeout_s=config.connect_timeout_s,
            response_timeout_s=config.timeout_s,
            long_connection=config.long_connections,
            sign_in_variant=config.sign_in_variant,
        )
        # Never seeded: two runs with the same --seed against one switch must not
        # start from the same traces (the second would be all 94 duplicates).
        trace_rng = random.Random()
        self.labels: list[str | None] = [None] * len(config.terminals)
        self.sessions = []
        for index, t in enumerate(config.terminals):
            machine = TerminalMachine(TerminalConfig(t.terminal_id, t.merchant_id, t.tmk))
            # A random first trace: a rerun in the same batch must not hit the
            # switch's duplicate check (94) with the traces of the last run.
            first = config.first_trace or trace_rng.randint(1, 900_000)
            machine.state.last_trace = first - 1  # the next is `first`
            software = None if config.software is None else config.software.link(t.terminal_id)
            self.sessions.append(
                TerminalSession(machine, options, on_outcome=self._hook(index), software=software)
            )
        self.index_of = {id(s): i for i, s in enumerate(self.sessions)}
        self.picker = TxnPicker(
            MixSettings(config.mix, config.pin_ratio, config.ic_ratio), config.cards, config.seed
        )
        self.idle: asyncio.Queue[TerminalSession] = asyncio.Queue()
        self.next_settle: dict[int, float] = {}
        self.tasks: set[asyncio.Task[None]] = set()  # in flight: cancelled on abort
        self.started = 0
        self.load_s = float("inf")  # the load phase's length (end_after); inf: none
        self.seconds_emitted = 0  # rows of the per-second series so far
        self.ticks_emitted = (0, 0)  # (ticks, skipped) up to the last row

    def _hook(self, index: int) -> Callable[[Outcome, float], None]:
        record, labels = self.stats.record, self.labels
        return lambda outcome, latency_s: record(outcome, latency_s, labels[index])

    async def until_stopped(self, work: Awaitable[Any]) -> None:
        """Await ``work`` unless a stop is requested first (then cancel it)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.control.stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def cancel_on_abort(self) -> None:
        await self.control.abort.wait()
        for task in list(self.tasks):
            task.cancel()

    # --- phases --------------------------------------------------------------

    async def sign_in_all(self) -> None:
        """Sign every terminal in, spread evenly over the ramp-up."""
        gate = asyncio.Semaphore(SIGN_IN_PARALLELISM)
        step_s = self.config.ramp_up_s / len(self.sessions)
        start = time.perf_counter()

        async def one(index: int, session: TerminalSession) -> None:
            await asyncio.sleep(max(0.0, start + index * step_s - time.perf_counter()))
            async with gate:
                await session.prepare()
            self.idle.put_nowait(session)

        try:
            await self.until_stopped(
                asyncio.gather(*(one(i, s) for i, s in enumerate(self.sessions)))
            )
        finally:
            self.stats.sign_in_phase_s = time.perf_counter() - start
            self.stats.ramp_sign_ins = self.stats.sign_ins

    def _open_connections(self) -> int:
        return sum(1 for s in self.sessions if s.connected and not s.peer_closed)

    async def hold(self, hold_s: float) -> None:
        """Hold every connection open and idle for ``hold_s``, sampling drops,
        then send one echo over each connection (a drop shows as a failure)."""
        stats = self.stats
        opened = sum(1 for s in self.sessions if s.connected)  # signed in, not yet checked
        connects_before = sum(s.connects for s in self.sessions)
        lowest = self._open_connections()
        deadline = time.perf_counter() + hold_s
        while (left_s := deadline - time.perf_counter()) > 0 and not self.control.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.control.stop.wait(), min(HOLD_SAMPLE_S, left_s))
            lowest = min(lowest, self._open_connections())
        stats.held_connections = self._open_connections()
        stats.dropped_connections = opened - lowest
        gate = asyncio.Semaphore(SIGN_IN_PARALLELISM)

        async def probe(session: TerminalSession) -> None:
            if not session.connected:
                return  # never signed in: already counted by the sign-in codes
            async with gate:
                # On the held connection as it is: a drop must show, not be repaired.
                outcome = await session.exchange(session.machine.echo(), reconnect=False)
            if outcome.response_code != "00":
                stats.probe_failures += 1

        await self.until_stopped(asyncio.gather(*(probe(s) for s in self.sessions)))
        stats.reconnects = sum(s.connects for s in self.sessions) - connects_before

    def end_after(self, duration_s: float) -> None:
        """End the load phase ``duration_s`` after it started (``stats.load_started``)."""
        assert self.stats.load_started is not None
        self.load_s = duration_s

    @property
    def stop_at(self) -> float:
        """When the load phase ends (``perf_counter`` time; inf: no duration)."""
        started = self.stats.load_started
        return math.inf if started is None else started + self.load_s

    def _budget_left(self) -> bool:
        return self._may_start() and time.perf_counter() < self.stop_at

    def _may_start(self) -> bool:
        """The count not reached and no stop asked for (the duration aside)."""
        count = self.config.count
        return (count is None or self.started < count) and not self.control.stop.is_set()

    async def _one(self, session: TerminalSession) -> None:
        """One transaction (or a due settlement) on an idle terminal."""
        try:
            settle_every = self.config.settle_every_s
            key = id(session)
            now = time.perf_counter()
            if settle_every is not None:
                due = self.next_settle.setdefault(key, now + random.uniform(0, settle_every))
                if now >= due or session.machine.upload_due:
                    self.next_settle[key] = now + settle_every
                    self.stats.settlements += 1
                    await session.settle()
                    return
            name, build = self.picker.pick(session.machine)
            self.stats.transactions[name] += 1
            self.labels[self.index_of[key]] = name
            await session.transact(build)
        except (TerminalStateError, ValueError) as exc:
            self.stats.errors[type(exc).__name__] += 1
        finally:
            self.idle.put_nowait(session)

    async def closed_loop(self, workers: int) -> None:
        async def worker() -> None:
            while self._budget_left():
                self.started += 1
                await self._one(await self.idle.get())

        self.tasks.update(asyncio.ensure_future(worker()) for _ in range(workers))
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def open_loop(self, shape: LoadShape) -> None:
        """Start transactions as the shape makes them due: by ``elapsed`` s, every
        tick k (k = 0, 1, …) with k ≤ ``shape.ticks_due(elapsed)`` has started.
        The ticker sleeps between ``OPEN_LOOP_WAKE_S`` and ``OPEN_LOOP_MAX_SLEEP_S``
        (never past the end of the duration) and starts every tick then due; a
        tick finding no idle terminal counts as skipped.  When the duration is up, the ticks
        due by its end are started in one last pass, so that ``rate`` offered
        for ``duration`` s is ``rate × duration`` ticks (rounded up), not the
        ticks due at the ticker's last wake-up before the end; the end is the
        duration itself (``end_after``), not a difference of clock readings.
        Tick k is due at the moment the shape has offered k ticks: the first at
        the start, then every 1/rate s (``--steps 100x1,200x1`` puts ticks
        0–99 in the first step and 100–299 in the second).  ``tick_phase`` (a
        share of a fleet split over processes) delays this process's ticks by
        that fraction of a tick."""
        loop = asyncio.get_running_loop()
        idle, stats, tasks = self.idle, self.stats, self.tasks
        done = tasks.discard
        stepped = bool(stats.steps)
        start = stats.load_started or time.perf_counter()
        phase = self.config.tick_phase
        # The end: the duration itself (a difference of two clock readings loses
        # precision on a machine up for months).
        end_s = self.load_s
        # Tick k (k = 0, 1, …) falls due when the shape's due count reaches k, so
        # floor(due) + 1 ticks are due by a moment, the first at the start; only
        # those due before the end are offered (one due at the very end is after
        # it).  _TICK_EPS absorbs float rounding either way.
        end_limit = shape.ticks_due(end_s) - phase - _TICK_EPS if math.isfinite(end_s) else math.inf
        while self._may_start():
            now = time.perf_counter()
            last_pass = now >= self.stop_at
            elapsed_s = end_s if last_pass else now - start
            due = shape.ticks_due(elapsed_s) - phase
            limit = end_limit if last_pass else min(math.floor(due + _TICK_EPS) + 1, end_limit)
            step = stats.steps[shape.segment_at(elapsed_s)] if stepped else None
            while self.started < limit and self._may_start():
                self.started += 1
                stats.ticks += 1
                if step is not None:
                    step.ticks += 1
                if idle.empty():
                    stats.skipped += 1
                    if step is not None:
                        step.skipped += 1
                else:
                    task = loop.create_task(self._one(idle.get_nowait()))
                    tasks.add(task)
                    task.add_done_callback(done)
            if last_pass:
                break
            rate = shape.rate_at(elapsed_s)
            # the next tick, number `started`, falls due when the due count reaches it
            wait_s = (self.started - due) / rate if rate > 0 else OPEN_LOOP_MAX_SLEEP_S
            wait_s = min(max(wait_s, OPEN_LOOP_WAKE_S), OPEN_LOOP_MAX_SLEEP_S)
            await asyncio.sleep(min(wait_s, max(self.stop_at - now, 0.0)))
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def report_progress(self) -> None:
        progress = self.config.progress
        if progress is None:
            return
        while True:
            await asyncio.sleep(self.config.progress_interval_s)
            progress(self.stats)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sessions), return_exceptions=True)


async def run_fleet(config: FleetConfig, control: FleetControl | None = None) -> FleetReport:
    """Run the fleet described by ``config`` and report what happened (also
    after a stop request through ``control``)."""
    raise_nofile_limit()
    started_at = datetime.now(UTC)
    fleet = _Fleet(config, control)
    helpers = [
        asyncio.ensure_future(fleet.report_progress()),
        asyncio.ensure_future(fleet.cancel_on_abort()),
    ]
    phase = config.on_phase or (lambda _text: None)
    try:
        phase(f"sign-in of {len(fleet.sessions)} terminals started")
        await fleet.sign_in_all()
        if config.hold_s is not None and not fleet.control.stop.is_set():
            phase(f"holding the connections {config.hold_s:g} s")
            await fleet.hold(config.hold_s)
        bounded = config.duration_s is not None or config.count is not None
        wanted = config.hold_s is None or bounded
        if wanted and fleet.stats.answers and not fleet.control.stop.is_set():
            phase("load started")
            await _load(fleet, config)
            phase("load stopped")
        elif wanted and not fleet.stats.answers:
            phase("no sign-in got an answer: no load phase")
    finally:
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await fleet.close()
    return FleetReport(
        fleet.stats,
        round(fleet.stats.load_elapsed_s, 3),
        parameters_of(config, started_at),
        interrupted=fleet.control.reason,
    )


async def _load(fleet: _Fleet, config: FleetConfig) -> None:
    """The load phase: open loop (a shape) or closed loop, for the duration,
    the count and/or the shape's length; a ``SecondRow`` every second."""
    stats, shape = fleet.stats, config.load_shape
    stepped = shape is not None and shape.stepped
    stats.start_load(len(shape.segments) if shape is not None and stepped else 0)
    if shape is not None and stepped:
        stats.step_of = shape.segment_at
    duration_s = config.duration_s
    if shape is not None and math.isfinite(shape.duration_s):
        duration_s = min(duration_s or math.inf, shape.duration_s)
    if duration_s is None and config.count is None:
        duration_s = DEFAULT_DURATION_S
    assert stats.load_started is not None
    if duration_s is not None:
        fleet.end_after(duration_s)
    ticker = asyncio.ensure_future(_every_second(fleet, shape))
    try:
        if shape is not None:
            await fleet.open_loop(shape)
        else:
            await fleet.closed_loop(config.concurrency or len(fleet.sessions))
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        stats.stop_load()
        elapsed_s = stats.load_elapsed_s
        if shape is not None and stepped:
            begin_s = 0.0
            for step, segment in zip(stats.steps, shape.segments, strict=True):
                step.seconds = round(min(max(elapsed_s - begin_s, 0.0), segment.seconds), 3)
                begin_s += segment.seconds
        if stats.window.requests or stats.ticks > fleet.ticks_emitted[0]:
            _emit_second(fleet, shape, elapsed_s)  # the last, partial second


async def _every_second(fleet: _Fleet, shape: LoadShape | None) -> None:
    started = fleet.stats.load_started
    assert started is not None
    while True:
        second = fleet.seconds_emitted + 1
        await asyncio.sleep(max(0.0, started + second - time.perf_counter()))
        _emit_second(fleet, shape, float(second))


def _emit_second(fleet: _Fleet, shape: LoadShape | None, at_s: float) -> None:
    """The row of the second ending at ``at_s`` s of load, to ``on_second``."""
    stats = fleet.stats
    window = stats.take_window()
    fleet.seconds_emitted += 1
    second = fleet.seconds_emitted
    ticks, skipped = fleet.ticks_emitted
    fleet.ticks_emitted = (stats.ticks, stats.skipped)
    if fleet.config.on_second is None:
        return
    inside_s = max(at_s - 1e-6, 0.0)
    row = SecondRow.of(
        second,
        window,
        step=shape.segment_at(inside_s) if shape is not None and shape.stepped else None,
        offered_per_s=None if shape is None else shape.rate_at(inside_s),
        ticks=stats.ticks - ticks,
        skipped=stats.skipped - skipped,
    )
    fleet.config.on_second(row, stats)
