"""The fleet runner against the fake switch, and its pieces (mix, fleet file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posp.errors import ConfigError
from posp.lab.fleetfile import FleetTerminal, read_fleet_file, write_fleet_file
from terminals.cards import TerminalCard
from terminals.fleet import FleetConfig, run_fleet
from terminals.fleet_cli import main as fleet_main
from terminals.loadshape import LoadShape
from terminals.mix import parse_mix
from tests.terminals.fakeswitch import TMK, FakeSwitch, serve, serve_in_thread

CARDS = [
    TerminalCard("6225880000000001", "2812", "123456"),
    TerminalCard("4761340000000019", "2812", "1234", card_org="VIS"),
    TerminalCard("6225880000000019", "2812", "111111", status="lost"),
]
FLEET = [FleetTerminal(f"1000000{i}", f"89810000000000{i}", TMK) for i in range(1, 4)]


async def test_closed_loop_runs_the_count_and_reports_every_exchange(port: int) -> None:
    config = FleetConfig(
        terminals=FLEET,
        cards=CARDS,
        port=port,
        count=60,
        concurrency=3,
        seed=7,
        long_connections=True,
        settle_every_s=0.05,
    )
    report = await run_fleet(config)
    assert report.sign_ins == 3
    assert sum(report.transactions.values()) + report.settlements == 60
    assert report.response_codes.get("00", 0) >= 60
    assert report.timeouts == 0 and report.mac_failures == 0
    assert report.requests_per_s > 0 and report.latency_ms["max"] >= report.latency_ms["p50"]


async def test_open_loop_counts_ticks_without_idle_terminal_as_skipped(port: int) -> None:
    config = FleetConfig(terminals=FLEET[:1], cards=CARDS, port=port, rate=200, duration_s=0.3)
    report = await run_fleet(config)
    assert sum(report.transactions.values()) > 0
    assert report.skipped + sum(report.transactions.values()) >= 50


def test_mix_parsing_names_the_bad_item() -> None:
    assert parse_mix("purchase=70, balance=30") == {"purchase": 70, "balance": 30}
    with pytest.raises(ValueError, match="bogus"):
        parse_mix("bogus=1")
    with pytest.raises(ValueError, match="weight"):
        parse_mix("purchase=x")


def test_fleet_file_round_trip_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    write_fleet_file(path, FLEET)
    assert read_fleet_file(path) == FLEET
    path.write_text(json.dumps({"terminals": [{"terminal_id": "1", "merchant_id": "x"}]}))
    with pytest.raises(ConfigError, match="entry 0"):
        read_fleet_file(path)


def test_cli_writes_a_json_report(tmp_path: Path) -> None:
    """posp-fleet end to end in a fresh loop against a server in a thread; exit 0."""
    fleet = tmp_path / "fleet.json"
    write_fleet_file(fleet, FLEET)
    cards = tmp_path / "cards.csv"
    cards.write_text(
        "pan,expiry,pin,status,balance_minor,daily_limit_minor,card_org\n"
        "6225880000000001,2812,123456,active,100000000,100000000,CUP\n"
    )
    out = tmp_path / "report.json"
    with serve_in_thread(FakeSwitch()) as switch_port, pytest.raises(SystemExit) as exited:
        fleet_main(
            ["--fleet-file", str(fleet), "--cards", str(cards), "--port", str(switch_port),
             "--count", "20", "--quiet", "--json", str(out)]
        )  # fmt: skip
    assert exited.value.code == 0
    report = json.loads(out.read_text())
    assert report["requests"] >= 20 and "p99.9" in report["latency_ms"]


@pytest.mark.slow
async def test_fleet_holds_thousands_of_long_connections(port: int) -> None:
    """2,000 terminals each keep one connection open (10,000 were checked by
    hand against a fake switch in another process: the fds of both ends do
    not fit one process's limit here)."""
    fleet = [FleetTerminal(f"{20000000 + i}", "898100000000001", TMK) for i in range(2000)]
    config = FleetConfig(
        terminals=fleet,
        cards=CARDS,
        port=port,
        long_connections=True,
        count=2000,
        concurrency=2000,
        timeout_s=60,
    )
    report = await run_fleet(config)
    assert report.sign_ins == 2000 and report.comms_errors == 0 and report.timeouts == 0


async def test_hold_keeps_every_connection_and_probes_each_with_an_echo(port: int) -> None:
    fleet = [FleetTerminal(f"{30000000 + i}", "898100000000001", TMK) for i in range(20)]
    config = FleetConfig(
        terminals=fleet, cards=CARDS, port=port, long_connections=True, hold_s=1.2, seed=3
    )
    report = await run_fleet(config)
    assert (report.sign_ins, report.held_connections) == (20, 20)
    assert (report.dropped_connections, report.probe_failures, report.reconnects) == (0, 0, 0)
    assert report.response_codes == {"00": 40}  # 20 sign-ins + 20 echoes (every phase)
    assert report.requests == 0 and report.sign_ins_per_s > 0


async def test_hold_counts_connections_the_switch_drops() -> None:
    """A switch hanging up after the sign-in: every connection counts as dropped
    and its echo probe fails (no silent reconnect)."""
    server = await serve(FakeSwitch(), hang_up_after=1)
    port = server.sockets[0].getsockname()[1]
    fleet = [FleetTerminal(f"{30000000 + i}", "898100000000001", TMK) for i in range(5)]
    config = FleetConfig(
        terminals=fleet, cards=CARDS, port=port, long_connections=True, hold_s=1.2, seed=3
    )
    try:
        report = await run_fleet(config)
    finally:
        server.close()
        await server.wait_closed()
    assert report.sign_ins == 5 and report.held_connections == 0
    assert (report.dropped_connections, report.probe_failures, report.reconnects) == (5, 5, 0)


def test_hold_without_long_connections_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    write_fleet_file(path, FLEET)
    with pytest.raises(SystemExit) as exit_info:
        fleet_main(["--fleet-file", str(path), "--hold", "1"])
    assert exit_info.value.code == 2


def test_load_response_codes_count_only_the_load_window() -> None:
    """Sign-ins before the load and answers after it stay out of the load histogram,
    so an approval rate computed from it matches ``requests``."""
    from terminals.fleet_report import FleetReport
    from terminals.fleet_stats import FleetStats
    from terminals.outcome import Event, Outcome
    from terminals.txn import TxnKind

    stats = FleetStats()
    stats.record(Outcome(TxnKind.SIGN_IN, "000001", Event.RESPONSE, "00"), 0.01)
    stats.start_load()
    stats.record(Outcome(TxnKind.PURCHASE, "000002", Event.RESPONSE, "00"), 0.01)
    stats.record(Outcome(TxnKind.PURCHASE, "000003", Event.RESPONSE, "51"), 0.01)
    stats.stop_load()
    stats.record(Outcome(TxnKind.PURCHASE, "000004", Event.RESPONSE, "00"), 0.01)
    report = FleetReport(stats, stats.load_elapsed_s)
    assert report.requests == 2
    assert report.load_response_codes == {"00": 1, "51": 1}
    assert report.response_codes == {"00": 3, "51": 1}


async def test_open_loop_at_a_high_rate_starts_due_ticks_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 1,500/s the ticker sleeps at most once per OPEN_LOOP_WAKE_S (not once
    per tick), yet every tick counts: started = ticks = transactions begun + skipped."""
    import asyncio
    import time

    from terminals import fleet as fleet_module
    from terminals.loadshape import LoadShape
    from terminals.session import TerminalSession

    fleet = fleet_module._Fleet(FleetConfig(terminals=FLEET, cards=CARDS, rate=1500))
    for session in fleet.sessions:
        fleet.idle.put_nowait(session)
    begun: list[TerminalSession] = []
    real_sleep = asyncio.sleep
    sleeps = 0

    async def one(session: TerminalSession) -> None:  # a stand-in transaction
        begun.append(session)
        await real_sleep(0.002)
        fleet.idle.put_nowait(session)

    async def counting_sleep(delay: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await real_sleep(delay)

    monkeypatch.setattr(fleet, "_one", one)
    started_at = time.perf_counter()
    fleet.stats.start_load()
    fleet.end_after(0.3)
    monkeypatch.setattr(asyncio, "sleep", counting_sleep)
    await fleet.open_loop(LoadShape.constant(1500))
    monkeypatch.undo()
    elapsed = time.perf_counter() - started_at
    assert fleet.started == fleet.stats.ticks == len(begun) + fleet.stats.skipped
    assert 0.8 * 1500 * 0.3 <= fleet.started <= 1500 * elapsed + 1
    assert fleet.stats.skipped > 0  # 3 terminals held 2 ms each cannot take 1,500/s
    assert 0 < sleeps <= 1.1 * elapsed / fleet_module.OPEN_LOOP_WAKE_S + 2 and len(begun) > 0
    assert fleet.idle.qsize() == len(FLEET)  # every transaction finished before return


class _FakeClock:
    """perf_counter for terminals.fleet, and an asyncio.sleep that moves it on by the
    delay asked for (then lets the loop run once): the open loop's ticks, wake-ups
    and end decided by this clock alone, whatever the machine's speed."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.woke: list[float] = []  # the clock after each sleep

    def perf_counter(self) -> float:
        return self.now


async def _run_open_loop(
    monkeypatch: pytest.MonkeyPatch,
    shape: LoadShape,
    duration_s: float,
    *,
    rate: float = 1500,
    phase: float = 0.0,
    clock_at: float = 4e7,
) -> tuple[int, _FakeClock, float, list[int]]:
    """One fleet's open loop under a fake clock starting at ``clock_at`` s (a machine
    up some 460 days: clock readings that lose precision when subtracted); the ticks
    it offered, the clock, its stop time and each step's ticks (a stepped shape)."""
    import asyncio
    import types

    from terminals import fleet as fleet_module
    from terminals.session import TerminalSession

    clock = _FakeClock(clock_at)
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        assert delay >= 0
        clock.now += delay
        clock.woke.append(clock.now)
        await real_sleep(0)

    config = FleetConfig(terminals=FLEET, cards=CARDS, rate=rate, tick_phase=phase)
    fleet = fleet_module._Fleet(config)
    for session in fleet.sessions:
        fleet.idle.put_nowait(session)

    async def one(session: TerminalSession) -> None:  # a stand-in transaction
        fleet.idle.put_nowait(session)

    monkeypatch.setattr(fleet, "_one", one)
    fake_time = types.SimpleNamespace(perf_counter=clock.perf_counter)
    monkeypatch.setattr(fleet_module, "time", fake_time)
    fleet.stats.start_load(len(shape.segments) if shape.stepped else 0)
    fleet.stats.load_started = clock.now
    fleet.end_after(duration_s)
    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    try:
        await fleet.open_loop(shape)
    finally:
        monkeypatch.setattr(asyncio, "sleep", real_sleep)
    assert fleet.started == fleet.stats.ticks
    return fleet.stats.ticks, clock, fleet.stop_at, [step.ticks for step in fleet.stats.steps]


async def test_open_loop_offers_rate_times_duration_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,500/s for 0.2 s is exactly 300 ticks, on a clock far from zero: the ticks
    due by the end of the duration are started after the ticker's last wake-up,
    none due at or after the end, and the ticker never sleeps past the end."""
    ticks, clock, stop_at, _ = await _run_open_loop(monkeypatch, LoadShape.constant(1500), 0.2)
    assert ticks == 300
    assert clock.woke and max(clock.woke) <= stop_at


async def test_open_loop_rounds_a_fractional_total_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ticks fall due at 0, 1/rate, 2/rate, …: 1,500/s for 0.2001 s is 301 of them."""
    ticks, *_ = await _run_open_loop(monkeypatch, LoadShape.constant(1500), 0.2001)
    assert ticks == 301


@pytest.mark.parametrize("clock_at", [0.0, 4e7])
async def test_open_loop_steps_offer_each_step_whole(
    monkeypatch: pytest.MonkeyPatch, clock_at: float
) -> None:
    """``--steps 100x1,200x1``: 300 ticks in all, 100 in the first step and 200 in the
    second (ticks 0–99 fall due in the first second, 100–299 in the next)."""
    from terminals.loadshape import Segment

    shape = LoadShape((Segment(100, 100, 1.0), Segment(200, 200, 1.0)))
    ticks, _, _, steps = await _run_open_loop(
        monkeypatch, shape, shape.duration_s, rate=100, clock_at=clock_at
    )
    assert (ticks, steps) == (300, [100, 200])


@pytest.mark.parametrize(("rate", "seconds", "parts"), [(100, 1.0, 3), (1500, 2.0, 7)])
async def test_open_loop_split_over_processes_offers_the_whole_total(
    monkeypatch: pytest.MonkeyPatch, rate: float, seconds: float, parts: int
) -> None:
    """``--processes N``: process i runs rate/N with tick phase i/N, and together they
    offer exactly rate × duration ticks (each rounding up alone gave up to N-1 more)."""
    from terminals.fleet_args import sliced

    whole = FleetConfig(terminals=FLEET * 3, cards=CARDS, rate=rate, duration_s=seconds)
    total = 0
    for index in range(parts):
        part = sliced(whole, index, parts)
        assert part.rate is not None
        ticks, *_ = await _run_open_loop(
            monkeypatch,
            LoadShape.constant(part.rate),
            seconds,
            rate=part.rate,
            phase=part.tick_phase,
        )
        total += ticks
    assert total == int(rate * seconds)


async def test_open_loop_stops_at_once_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop asked for ends the open loop without the last pass of due ticks."""
    from terminals import fleet as fleet_module
    from terminals.loadshape import LoadShape
    from terminals.session import TerminalSession

    fleet = fleet_module._Fleet(FleetConfig(terminals=FLEET, cards=CARDS, rate=1500))
    for session in fleet.sessions:
        fleet.idle.put_nowait(session)

    async def one(session: TerminalSession) -> None:  # the first transaction asks for the stop
        fleet.control.stop.set()
        fleet.idle.put_nowait(session)

    monkeypatch.setattr(fleet, "_one", one)
    fleet.stats.start_load()
    assert fleet.stats.load_started is not None
    fleet.end_after(60.0)
    await fleet.open_loop(LoadShape.constant(1500))
    assert 1 <= fleet.stats.ticks < 1500 * 60


async def test_open_loop_stops_at_the_count_within_a_batch_of_due_ticks(port: int) -> None:
    config = FleetConfig(terminals=FLEET, cards=CARDS, port=port, rate=5000, count=7)
    report = await run_fleet(config)
    assert sum(report.transactions.values()) + report.skipped == 7


def test_fleet_file_is_owner_only_even_over_a_readable_file(tmp_path: Path) -> None:
    """The clear lab TMKs never sit in a file others can read: the file is written
    fresh (0600) and renamed over whatever was there, including a 0644 file."""
    path = tmp_path / "fleet.json"
    path.write_text("{}", encoding="utf-8")
    path.chmod(0o644)
    write_fleet_file(path, FLEET)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_fleet_file(path) == FLEET
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.json"]


def test_first_trace_starts_every_terminal_there_and_is_checked() -> None:
    """Two runs in one batch on one switch keep their traces apart with
    ``first_trace`` (the purchase benchmark's warm-up); unset, each terminal
    starts at a random trace; outside 1..999999 the fleet refuses it."""
    from terminals import fleet as fleet_module

    fleet = fleet_module._Fleet(FleetConfig(terminals=FLEET, cards=CARDS, first_trace=500_001))
    assert {s.machine._next_trace() for s in fleet.sessions} == {"500001"}
    wrapped = fleet_module._Fleet(FleetConfig(terminals=FLEET, cards=CARDS, first_trace=1))
    assert {s.machine._next_trace() for s in wrapped.sessions} == {"000001"}
    for bad in (0, 1_000_000):
        with pytest.raises(ValueError, match="first_trace"):
            fleet_module._Fleet(FleetConfig(terminals=FLEET, cards=CARDS, first_trace=bad))
