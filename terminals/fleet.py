"""The fleet runner: many simulated terminals driving a switch.

``run_fleet(config)`` signs every terminal in (spread over the ramp-up), then
runs transactions open loop (``rate`` tx/s, one new transaction per tick on
an idle terminal) or closed loop (``concurrency`` workers), for a duration
or a count, with periodic settlement, and returns a ``FleetReport``.  With ``hold_s``
(long connections) the fleet first holds every signed-in connection open and
idle for that long, counting connections the switch drops, then probes each
with an echo; the load phase follows only when a duration or count is given.

Invariants: a terminal has at most one request in flight (idle terminals
wait in a queue); the open loop never queues work it cannot start — a tick
with no idle terminal is counted as ``skipped``; every exchange is recorded
in one ``LatencyHistogram`` (no per-sample list).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from posp.lab.fleetfile import FleetTerminal
from terminals.cards import TerminalCard
from terminals.config import TerminalConfig
from terminals.fleet_report import FleetReport, FleetStats
from terminals.machine import TerminalMachine, TerminalStateError
from terminals.mix import DEFAULT_MIX, MixSettings, TxnPicker, parse_mix
from terminals.session import SessionOptions, TerminalSession

SIGN_IN_PARALLELISM = 256
HOLD_SAMPLE_S = 1.0  # how often the hold phase counts open connections
OPEN_LOOP_WAKE_S = 0.002  # the open loop's shortest sleep: due ticks start together


@dataclass
class FleetConfig:
    """What to run.  Exactly one of ``rate`` / ``concurrency`` picks the loop
    (neither = closed loop, one worker per terminal); ``duration_s`` and/or
    ``count`` bound the run (neither = 10 s)."""

    terminals: list[FleetTerminal]
    cards: list[TerminalCard]
    host: str = "127.0.0.1"
    port: int = 5800
    rate: float | None = None
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

    def __init__(self, config: FleetConfig) -> None:
        if not config.terminals:
            raise ValueError("the fleet needs at least one terminal")
        self.config = config
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
        self.sessions = []
        for t in config.terminals:
            machine = TerminalMachine(TerminalConfig(t.terminal_id, t.merchant_id, t.tmk))
            # A random first trace: a rerun in the same batch must not hit the
            # switch's duplicate check (94) with the traces of the last run.
            machine.state.last_trace = trace_rng.randint(1, 900_000)
            self.sessions.append(TerminalSession(machine, options, on_outcome=self.stats.record))
        self.picker = TxnPicker(
            MixSettings(config.mix, config.pin_ratio, config.ic_ratio), config.cards, config.seed
        )
        self.idle: asyncio.Queue[TerminalSession] = asyncio.Queue()
        self.next_settle: dict[int, float] = {}
        self.started = 0
        self.stop_at = float("inf")

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

        await asyncio.gather(*(one(i, s) for i, s in enumerate(self.sessions)))
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
        while (left_s := deadline - time.perf_counter()) > 0:
            await asyncio.sleep(min(HOLD_SAMPLE_S, left_s))
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

        await asyncio.gather(*(probe(s) for s in self.sessions))
        stats.reconnects = sum(s.connects for s in self.sessions) - connects_before

    def _budget_left(self) -> bool:
        count = self.config.count
        return (count is None or self.started < count) and time.perf_counter() < self.stop_at

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

        await asyncio.gather(*(worker() for _ in range(workers)))

    async def open_loop(self, rate: float) -> None:
        """One transaction per tick of ``1/rate`` s on an idle terminal.  The
        ticker wakes at most every ``OPEN_LOOP_WAKE_S`` and starts every tick
        then due (not one sleep per tick at high rates); each tick counts in
        ``started``, and one finding no idle terminal counts as ``skipped``."""
        loop = asyncio.get_running_loop()
        idle = self.idle
        stats = self.stats
        running: set[asyncio.Task[None]] = set()  # strong references until done
        done = running.discard
        interval_s = 1.0 / rate
        next_tick = time.perf_counter()
        while self._budget_left():
            now = time.perf_counter()
            if next_tick > now:
                await asyncio.sleep(max(next_tick - now, OPEN_LOOP_WAKE_S))
                now = time.perf_counter()
            while True:
                next_tick += interval_s
                self.started += 1
                if idle.empty():
                    stats.skipped += 1
                else:
                    task = loop.create_task(self._one(idle.get_nowait()))
                    running.add(task)
                    task.add_done_callback(done)
                if next_tick > now or not self._budget_left():
                    break
        if running:
            await asyncio.gather(*running)

    async def report_progress(self) -> None:
        progress = self.config.progress
        if progress is None:
            return
        while True:
            await asyncio.sleep(self.config.progress_interval_s)
            progress(self.stats)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sessions), return_exceptions=True)


async def run_fleet(config: FleetConfig) -> FleetReport:
    """Run the fleet described by ``config`` and report what happened."""
    raise_nofile_limit()
    fleet = _Fleet(config)
    progress = asyncio.create_task(fleet.report_progress())
    try:
        await fleet.sign_in_all()
        if config.hold_s is not None:
            await fleet.hold(config.hold_s)
        if config.hold_s is None or config.duration_s is not None or config.count is not None:
            await _load(fleet, config)
    finally:
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
        await fleet.close()
    return fleet.stats.report()


async def _load(fleet: _Fleet, config: FleetConfig) -> None:
    """The load phase: open or closed loop for the duration and/or count."""
    fleet.stats.start_load()
    duration_s = config.duration_s
    if duration_s is None and config.count is None:
        duration_s = 10.0
    if duration_s is not None:
        fleet.stop_at = time.perf_counter() + duration_s
    if config.rate is not None:
        await fleet.open_loop(config.rate)
    else:
        workers = min(config.concurrency or len(fleet.sessions), len(fleet.sessions))
        await fleet.closed_loop(workers)
    fleet.stats.stop_load()
