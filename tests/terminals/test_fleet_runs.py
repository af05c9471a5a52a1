"""posp-fleet runs as a load tester makes them: against a closed port, a switch
that dies mid-run, with signals, thresholds, shapes, a series, several
processes, and bad options."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from posp.iso8583.message import Message
from posp.lab.fleetfile import FleetTerminal, write_fleet_file
from terminals.fleet import FleetConfig, run_fleet
from terminals.fleet_args import sliced
from terminals.fleet_cli import main as fleet_main
from terminals.fleet_report import FleetReport
from terminals.latency import LatencyHistogram
from terminals.loadshape import RAMP_SEGMENTS, LoadShape, parse_ramp, parse_steps
from tests.terminals.fakeswitch import TMK, FakeSwitch, serve, serve_in_thread
from tests.terminals.processes import free_port
from tests.terminals.test_fleet import CARDS

BIN = Path(sys.executable).parent
FLEET = [FleetTerminal(f"4000000{i}", "898100000000001", TMK) for i in range(1, 5)]
CARD_FILE = (
    "pan,expiry,pin,status,balance_minor,daily_limit_minor,card_org\n"
    "6225880000000001,2812,123456,active,100000000,100000000,CUP\n"
)


def fleet_argv(tmp_path: Path, port: int, *extra: str) -> list[str]:
    fleet, cards = tmp_path / "fleet.json", tmp_path / "cards.csv"
    if not fleet.exists():
        write_fleet_file(fleet, FLEET)
        cards.write_text(CARD_FILE)
    return ["--fleet-file", str(fleet), "--cards", str(cards), "--port", str(port), *extra]


def run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        fleet_main(argv)
    code = exited.value.code
    assert isinstance(code, int)
    return code


def test_a_closed_port_fails_the_run_with_no_successes(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    argv = fleet_argv(tmp_path, free_port(), "--rate", "100", "--duration", "5")
    assert run_cli([*argv, "--quiet", "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["outcomes"]["approved"] == 0 and report["answered"] == 0
    assert report["comms_errors"] == len(FLEET)  # one refused sign-in each, then no load
    assert "no request got an answer" in report["failures"][0]


def test_a_switch_killed_mid_run_counts_failures_and_fails_on_the_error_rate(
    tmp_path: Path,
) -> None:
    """The switch dies after 40 answers: the rest are connection errors, counted as
    such, kept out of the latency histogram, and --fail-on makes the exit 1."""
    out = tmp_path / "report.json"
    with serve_in_thread(FakeSwitch(), die_after=40) as switch_port:
        argv = fleet_argv(tmp_path, switch_port, "--concurrency", "4", "--count", "200")
        argv += ["--long-connections", "--fail-on", "error_rate>1%", "--quiet"]
        assert run_cli([*argv, "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    outcomes = report["outcomes"]
    assert outcomes["connection_error"] > 0 and report["answered"] < report["requests"]
    assert report["answered"] == outcomes["approved"] + outcomes["declined"] <= 40
    answered_hist = LatencyHistogram.decode(report["raw"]["total"]["latency"])
    assert answered_hist.count == report["answered"]
    assert report["failures"] == [
        f"error_rate is {report['error_rate']:.2%} (fail on error_rate > 1%)"
    ]


async def shaped_run(port: int, shape: LoadShape) -> FleetReport:
    config = FleetConfig(
        terminals=FLEET, cards=CARDS, port=port, shape=shape, long_connections=True
    )
    return await run_fleet(config)


async def test_steps_are_reported_one_row_each_and_add_up(port: int) -> None:
    report = await shaped_run(port, parse_steps("100x0.5,200x0.5"))
    steps = report.steps()
    assert [s["target_per_s"] for s in steps] == [100.0, 200.0]
    assert sum(s["ticks"] for s in steps) == report.stats.ticks > 0
    assert sum(s["requests"] for s in steps) == report.requests
    assert report.parameters["shape"] == [[100.0, 100.0, 0.5], [200.0, 200.0, 0.5]]


async def test_a_ramp_is_reported_in_tenths_rising_to_its_end_rate(port: int) -> None:
    report = await shaped_run(port, parse_ramp("0:200:1"))
    steps = report.steps()
    assert len(steps) == RAMP_SEGMENTS
    assert steps[0]["target_per_s"] == [0.0, 20.0] and steps[-1]["target_per_s"] == [180.0, 200.0]
    assert sum(s["ticks"] for s in steps) == report.stats.ticks <= 100
    assert steps[0]["ticks"] < steps[-1]["ticks"]


def test_series_rows_add_up_to_the_report(tmp_path: Path) -> None:
    out, series = tmp_path / "report.json", tmp_path / "series.csv"
    with serve_in_thread(FakeSwitch()) as switch_port:
        argv = fleet_argv(tmp_path, switch_port, "--rate", "40", "--duration", "2.5")
        argv += ["--quiet", "--json", str(out), "--series", str(series)]
        assert run_cli(argv) == 0
    report = json.loads(out.read_text())
    with series.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["second"]) for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 2
    assert sum(int(r["requests"]) for r in rows) == report["requests"]
    assert sum(int(r["ticks"]) for r in rows) == report["offered"]["ticks"]
    assert report["parameters"]["rate"] == 40.0 and report["parameters"]["seed"] is None
    assert report["parameters"]["target"] == f"127.0.0.1:{switch_port}"


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_load_and_the_report_is_still_written(
    tmp_path: Path, signum: signal.Signals, status: int
) -> None:
    out = tmp_path / "report.json"
    with serve_in_thread(FakeSwitch()) as switch_port:
        argv = fleet_argv(tmp_path, switch_port, "--rate", "50", "--duration", "600")
        argv = [str(BIN / "posp-fleet"), *argv, "--quiet", "--json", str(out)]
        fleet = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        try:
            assert fleet.stderr is not None
            for line in fleet.stderr:
                if "load started" in line:
                    break
            fleet.send_signal(signum)
            _, rest = fleet.communicate(timeout=60)
        finally:
            if fleet.poll() is None:
                fleet.kill()
                fleet.wait()
    assert fleet.returncode == status
    report = json.loads(out.read_text())
    assert report["interrupted"] == signum.name and report["duration_s"] < 600
    assert f"stopped early by {signum.name}" in rest


def test_a_signal_to_several_processes_stops_all_and_merges_what_ran(tmp_path: Path) -> None:
    """SIGINT to the parent of --processes 2 reaches each child once: both stop,
    report, and the parent merges and writes the JSON (exit 130)."""
    out = tmp_path / "report.json"
    with serve_in_thread(FakeSwitch()) as switch_port:
        argv = fleet_argv(tmp_path, switch_port, "--rate", "40", "--duration", "600")
        argv = [str(BIN / "posp-fleet"), *argv, "--processes", "2", "--quiet", "--json", str(out)]
        fleet = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        try:
            assert fleet.stderr is not None
            loads = 0
            for line in fleet.stderr:
                loads += "load started" in line
                if loads == 2:
                    break
            fleet.send_signal(signal.SIGINT)
            fleet.communicate(timeout=60)
        finally:
            if fleet.poll() is None:
                fleet.kill()
                fleet.wait()
    assert fleet.returncode == 130
    report = json.loads(out.read_text())
    assert report["interrupted"] == "SIGINT" and report["parameters"]["processes"] == 2
    assert report["sign_ins"] == len(FLEET)


def test_processes_split_the_fleet_and_merge_their_reports(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    with serve_in_thread(FakeSwitch()) as switch_port:
        argv = fleet_argv(tmp_path, switch_port, "--concurrency", "2", "--count", "40")
        argv += ["--processes", "2", "--quiet", "--json", str(out)]
        assert run_cli(argv) == 0
    report = json.loads(out.read_text())
    assert sum(report["transactions"].values()) + report["settlements"] == 40
    assert report["sign_ins"] == len(FLEET)  # each terminal signed in once, by one process
    assert report["parameters"]["processes"] == 2


def test_slices_are_disjoint_cover_the_fleet_and_share_the_load() -> None:
    config = FleetConfig(terminals=FLEET * 2 + FLEET[:1], cards=CARDS, rate=90.0, count=10)
    parts = [sliced(config, i, 3) for i in range(3)]
    assert [t for p in parts for t in p.terminals] == config.terminals
    assert [p.rate for p in parts] == [30.0] * 3 and sum(p.count or 0 for p in parts) == 10


def test_the_json_path_is_checked_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 at once (a run against the closed port would exit 1)."""
    target = tmp_path / "missing-dir" / "report.json"
    assert run_cli([*fleet_argv(tmp_path, free_port()), "--json", str(target)]) == 2
    assert "missing-dir" in capsys.readouterr().err


def test_concurrency_above_the_fleet_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli([*fleet_argv(tmp_path, free_port()), "--concurrency", "20"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--concurrency 20 exceeds the fleet's 4 terminals" in err


@pytest.mark.parametrize(
    "bad",
    [
        ["--rate", "0"],
        ["--rate", "-5"],
        ["--rate", "nan"],
        ["--concurrency", "0"],
        ["--terminals", "0"],
        ["--duration", "-1"],
        ["--count", "0"],
        ["--timeout-s", "0"],
        ["--processes", "0"],
        ["--port", "70000"],
        ["--steps", "500x0"],
        ["--ramp", "1:2"],
        ["--fail-on", "p99>abc"],
        ["--pin-ratio", "2"],
    ],
)
def test_invalid_numbers_exit_2_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: list[str]
) -> None:
    assert run_cli([*fleet_argv(tmp_path, free_port()), *bad]) == 2
    assert f"argument {bad[0]}" in capsys.readouterr().err


def test_duration_with_steps_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*fleet_argv(tmp_path, free_port()), "--steps", "10x1", "--duration", "5"]
    assert run_cli(argv) == 2
    assert "--duration conflicts with --ramp/--steps" in capsys.readouterr().err


def test_children_of_processes_get_their_own_series_file() -> None:
    from terminals.fleet_procs import series_path

    assert series_path("out/run.csv", 0) == os.path.join("out", "run.1.csv")


def test_a_metrics_port_in_use_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 naming the option (a run against the closed port would exit 1)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        assert run_cli([*fleet_argv(tmp_path, free_port()), "--metrics-port", busy]) == 2
    assert f"--metrics-port {busy}" in capsys.readouterr().err


async def test_a_second_stop_request_cancels_requests_still_waiting_for_an_answer() -> None:
    """The switch never answers a purchase and the timeout is long: the first stop
    request waits for the in-flight requests, the second cancels them, and the
    run still reports."""
    import asyncio

    from terminals.fleet import FleetControl

    unanswered = 0
    both_sent = asyncio.Event()

    def sign_ins_only(message: Message) -> str | None:
        nonlocal unanswered
        if message.mti == "0800":
            return "00"
        unanswered += 1
        if unanswered == 2:
            both_sent.set()
        return None

    server = await serve(FakeSwitch(override=sign_ins_only))
    config = FleetConfig(
        terminals=FLEET, cards=CARDS, port=server.sockets[0].getsockname()[1],
        mix={"purchase": 1}, concurrency=2, duration_s=600, timeout_s=600,
        long_connections=True,
    )  # fmt: skip
    control = FleetControl()
    run = asyncio.ensure_future(run_fleet(config, control))
    try:
        await both_sent.wait()
        control.request_stop("SIGINT")
        control.request_stop("SIGINT")
        report = await asyncio.wait_for(run, 60)
    finally:
        server.close()
    assert report.interrupted == "SIGINT" and report.answered == 0
    assert report.sign_ins == len(FLEET) and report.duration_s < 600
