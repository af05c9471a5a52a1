"""The fleet against the whole stack, each piece its own process: ``hsm-sim``,
``issuer-sim serve`` (its own in-process HSM), ``posp serve`` (SQLite, HSM over
TCP) and ``posp-fleet``.  Every terminal of the fleet signs in and holds a long
connection; then a mixed load (the fleet's default mix: purchases with and
without PIN, balance, void, refund, pre-auth, completion) runs

1. closed loop (``POSP_BENCH_CONCURRENCY`` in flight) — the highest rate the
   machine sustains, with py-spy sampling the switch when it is installed;
2. open loop at ``POSP_BENCH_RATE`` (default 80 % of the closed-loop rate).

Prints rate, p50/p99, codes and CPU/RSS per process.  ``POSP_BENCH_SECONDS``
(default 60) is the length of each run, ``POSP_BENCH_TERMINALS`` the fleet size
(default 2000), ``POSP_BENCH_OUT`` a file for the figures as JSON,
``POSP_BENCH_PROFILE`` a file for the switch's raw py-spy samples.  The PIN
purchase target (1,500/s) is measured by bench_purchase; this one is about the
fleet: connections held and a mixed load.  On the shared 2-core development
machine every process competes for the same two cores: figures are pessimistic.

Before the stack run, the fleet's own cost per transaction (no sockets) is
printed, to show the fleet is not the bottleneck.

Then a **step load** finds the knee in one run: ``posp-fleet --steps`` (default
``500x30,1000x30,1500x30,2000x30``, ``POSP_BENCH_STEPS``) against two ``posp
serve`` workers on one port (as bench_purchase), ``POSP_BENCH_STEP_TERMINALS``
terminals (default 1500) on long connections, the default mix over the demo
cards whose balance and limits outlast the run.  Prints, per step, the offered
and achieved rate, skipped ticks, errors, p50/p99 and each process's CPU, and
names the knee: the first step whose achieved rate falls 5 % short of its
target or whose median latency is more than 4 times the first step's.
``POSP_BENCH_FLEET_RUNS`` picks the runs (``mixed,steps``, default both).
"""

from __future__ import annotations

import copy
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from issuer_sim.cardfile import DEMO_CARDS
from terminals.cards import TerminalCard
from terminals.config import TerminalConfig
from terminals.machine import TerminalMachine
from terminals.procstat import ProcessMeter
from tests.terminals.fakeswitch import TMK, FakeSwitch
from tests.terminals.processes import LabProcess, LabStack

CARD = TerminalCard("6225880000000001", "2812", "123456")
ROUNDS = 5000
PROFILE_MAX_S = 20.0
SIGN_INS_PER_S = 300.0  # pessimistic sign-in rate (docs/performance-fleet.md)
SIGN_IN_ALLOWANCE_S = 3.0  # fleet start-up before its first sign-in
AMPLE_MINOR = 100_000_000  # a card's balance and daily limit that outlast a step load
KNEE_SHORTFALL = 0.95  # achieved below 95 % of the target ...
KNEE_P50_FACTOR = 4.0  # ... or p50 above 4 x the first step's (p99 is too noisy): past the knee


def _fleet_machine_cost() -> None:
    """Build + parse of a PIN purchase on one core, answers precomputed."""
    machine = TerminalMachine(TerminalConfig("12345678", "123456789012345", TMK))
    switch = FakeSwitch()
    answer = switch.answer(machine.sign_in("003")[2:])
    assert answer is not None and machine.accept(answer).approved
    twin = TerminalMachine(machine.config, copy.deepcopy(machine.state))
    answers = []
    for _ in range(ROUNDS):
        reply = switch.answer(twin.purchase(CARD, 1234, pin="123456")[2:])
        assert reply is not None
        twin.accept(reply)
        answers.append(reply)
    started = time.perf_counter()
    for reply in answers:
        machine.purchase(CARD, 1234, pin="123456")
        if not machine.accept(reply).approved:
            raise RuntimeError("benchmark answer was not accepted")
    rate = ROUNDS / (time.perf_counter() - started)
    print(f"fleet cost: PIN purchase build + parse {rate:,.0f} round trips/s on one core")


def _start_stack(run_dir: Path, terminals: int, switches: int = 1) -> tuple[LabStack, Path, int]:
    stack = LabStack(run_dir)
    stack.env["POSP_ISSUER_LOG_LEVEL"] = "warning"
    hsm = stack.start_hsm()
    issuer = stack.start_issuer()
    stack.switch_env(issuer_port=issuer.port, hsm_url=f"tcp://127.0.0.1:{hsm.port}")
    fleet_file = stack.provision_fleet(terminals)
    if switches == 1:
        return stack, fleet_file, stack.start_switch().port
    return stack, fleet_file, stack.start_switches(switches)[0].port


def _profile(switch: LabProcess, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy record on the switch for ``seconds`` (sampled, non-blocking), if installed."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return None
    argv = [py_spy, "record", "--threads", "--nonblocking", "-r", "50", "-f", "raw"]
    argv += ["-o", str(out)]
    argv += ["-d", str(int(seconds)), "-p", str(switch.process.pid)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Frames on top of a thread's stack while it waits (event loop in epoll, store
# workers on their queues): not work, left out of the hot list.
IDLE_FRAMES = (
    "Runner.run (",
    "SqliteWorker._take_group (",
    "SqliteWorker.run (",
    "_worker (concurrent/futures/thread.py",
)


def summarize_profile(path: Path, top: int = 8) -> dict[str, Any]:
    """Per thread, the share of samples spent working (not in an IDLE_FRAMES
    wait); and (share of working samples, frame) for the hottest frames."""
    leaves: Counter[str] = Counter()
    per_thread: dict[str, Counter[bool]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        idle = frames[-1].startswith(IDLE_FRAMES)
        thread = frames[0].partition(": ")[2] or frames[0]  # "thread (tid): name"
        per_thread.setdefault(thread, Counter())[idle] += int(count)
        if not idle:
            leaves[frames[-1]] += int(count)
    busy = sum(leaves.values()) or 1
    return {
        "thread_busy": {
            name: round(c[False] / (c[False] + c[True]), 3) for name, c in per_thread.items()
        },
        "hot_frames": [[round(n / busy, 3), frame] for frame, n in leaves.most_common(top)],
    }


def _run(
    stack: LabStack,
    fleet_file: Path,
    port: int,
    seconds: float,
    load: list[str],
    *,
    seed: int = 7,
) -> dict[str, Any]:
    args = ["--fleet-file", str(fleet_file), "--port", str(port), "--long-connections"]
    args += ["--duration", str(seconds), "--timeout-s", "10", "--seed", str(seed), *load]
    return stack.run_fleet(args)


def _print_run(title: str, report: dict[str, Any]) -> None:
    lat = report["latency_ms"]
    codes = ", ".join(f"{c}:{n}" for c, n in report["response_codes"].items())
    print(f"{title}: {report['requests_per_s']:,.0f} req/s over {report['duration_s']:.0f} s")
    print(f"  p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms  max {lat['max']:.0f} ms")
    print(f"  codes {codes}; timeouts {report['timeouts']}, skipped ticks {report['skipped']}")
    for proc in report["processes"]:
        print(
            f"  {proc['name']:<11} CPU {proc['cpu_percent']:5.1f} % of a core  "
            f"RSS {proc['rss_mib']:6.1f} MiB  fds {proc['peak_open_fds']}"
        )


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("meters", "started_at", "ended_at")}


def fleet_against_stack(seconds: float, terminals: int, concurrency: int) -> dict[str, Any]:
    soft_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft_hard[1], soft_hard[1]))  # children inherit
    figures: dict[str, Any] = {"terminals": terminals, "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        run_dir = Path(tmp)
        stack, fleet_file, port = _start_stack(run_dir, terminals)
        try:
            switch = next(p for p in stack.processes if p.name == "posp-serve")
            profile_path = run_dir / "switch-profile.txt"
            # Profile the load, not the sign-ins: start once they should be over.
            spies: list[subprocess.Popen[bytes] | None] = []
            profile_s = min(seconds * 0.8, PROFILE_MAX_S)
            timer = threading.Timer(
                SIGN_IN_ALLOWANCE_S + terminals / SIGN_INS_PER_S,
                lambda: spies.append(_profile(switch, profile_s, profile_path)),
            )
            timer.start()
            closed = _run(stack, fleet_file, port, seconds, ["--concurrency", str(concurrency)])
            timer.cancel()
            spy = spies[0] if spies else None
            _print_run(f"closed loop, {concurrency} in flight, {terminals} held", closed)
            figures["closed_loop"] = _figures(closed)
            if spy is not None:
                spy.wait(timeout=PROFILE_MAX_S + 30)
                if profile_path.exists():
                    if keep := os.environ.get("POSP_BENCH_PROFILE"):
                        shutil.copy(profile_path, keep)
                    profile = summarize_profile(profile_path)
                    figures["switch_profile"] = profile
                    print("  switch, py-spy: share of samples each thread was working:")
                    for thread, share in profile["thread_busy"].items():
                        print(f"    {share:6.1%}  {thread}")
                    print("  hottest frames (share of working samples):")
                    for share, frame in profile["hot_frames"]:
                        print(f"    {share:6.1%}  {frame}")
            default_rate = 0.8 * float(closed["requests_per_s"])
            rate = float(os.environ.get("POSP_BENCH_RATE", default_rate))
            opened = _run(stack, fleet_file, port, seconds, ["--rate", f"{rate:.0f}"], seed=8)
            _print_run(f"open loop at {rate:,.0f} tx/s target, {terminals} held", opened)
            figures["open_loop"] = {"target_rate": round(rate), **_figures(opened)}
        finally:
            stack.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, soft_hard)
    return figures


def _ample_card_file(path: Path) -> Path:
    """The active demo cards whose balance and daily limit outlast the run."""
    with DEMO_CARDS.open(newline="") as source:
        rows = [
            row
            for row in csv.DictReader(source)
            if row["status"] == "active"
            and int(row["balance_minor"]) >= AMPLE_MINOR
            and int(row["daily_limit_minor"]) >= AMPLE_MINOR
        ]
    with path.open("w", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


class MachineMeter:
    """The whole machine's busy CPU (all processes, ours and everyone else's) from
    /proc/stat, sampled in a thread: what the stack competed with."""

    def __init__(self, tick_s: float = 0.5) -> None:
        self.samples: list[tuple[float, int, int]] = []  # (perf_counter, busy, total) jiffies
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(tick_s,), daemon=True)

    def _run(self, tick_s: float) -> None:
        while True:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            idle = fields[3] + fields[4]  # idle + iowait
            self.samples.append((time.perf_counter(), sum(fields) - idle, sum(fields)))
            if self._stop.wait(tick_s):
                return

    def __enter__(self) -> MachineMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def busy_cores_between(self, from_s: float, to_s: float) -> float:
        """Cores busy on average (all processes) between two perf_counter times."""
        window = [s for s in self.samples if from_s <= s[0] <= to_s]
        if len(window) < 2 or window[-1][2] == window[0][2]:
            return 0.0
        cores = os.cpu_count() or 1
        return cores * (window[-1][1] - window[0][1]) / (window[-1][2] - window[0][2])


def _step_windows(report: dict[str, Any]) -> list[tuple[float, float]]:
    """Each step's perf_counter window, laid back from the fleet's exit (its load
    ends just before), 1 s trimmed at each edge."""
    end_s = report["ended_at"]
    windows = []
    for step in reversed(report["steps"]):
        windows.append((end_s - step["seconds"] + 1.0, end_s - 1.0))
        end_s -= step["seconds"]
    return windows[::-1]


def _step_cpu(report: dict[str, Any], machine: MachineMeter) -> list[dict[str, float]]:
    """CPU (% of one core) per process during each step, and the whole machine's."""
    meters: list[ProcessMeter] = report["meters"]
    return [
        {
            **{m.name: round(m.cpu_percent_between(a, b), 1) for m in meters},
            "machine": round(100 * machine.busy_cores_between(a, b), 1),
        }
        for a, b in _step_windows(report)
    ]


def knee(steps: list[dict[str, Any]]) -> int | None:
    """Index of the first step past the knee (achieved rate short of the target,
    or median latency far above the first step's); None when every step kept up."""
    first_p50 = max(steps[0]["latency_ms"]["p50"], 1.0)
    for index, step in enumerate(steps):
        short = step["per_s"] < KNEE_SHORTFALL * float(step["target_per_s"])
        if short or step["latency_ms"]["p50"] > KNEE_P50_FACTOR * first_p50:
            return index
    return None


def step_load(steps: str, terminals: int) -> dict[str, Any]:
    """One ``posp-fleet --steps`` run against two switch workers; figures per step."""
    soft_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft_hard[1], soft_hard[1]))
    with tempfile.TemporaryDirectory(prefix="bench-fleet-steps-") as tmp:
        run_dir = Path(tmp)
        stack, fleet_file, port = _start_stack(run_dir, terminals, switches=2)
        try:
            cards = _ample_card_file(run_dir / "cards.csv")
            args = ["--fleet-file", str(fleet_file), "--cards", str(cards), "--port", str(port)]
            args += ["--long-connections", "--steps", steps, "--timeout-s", "10", "--seed", "7"]
            args += ["--series", str(run_dir / "series.csv")]
            with MachineMeter() as machine:
                report = stack.run_fleet(args)
            cpu = _step_cpu(report, machine)
            if keep := os.environ.get("POSP_BENCH_SERIES"):
                shutil.copy(run_dir / "series.csv", keep)
        finally:
            stack.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, soft_hard)
    print(f"step load, {terminals} terminals on long connections, 2 switch workers, default mix")
    print("  target/s  achieved/s  answered/s  skipped  errors  p50 ms  p99 ms  CPU % of a core")
    for step, step_cpu in zip(report["steps"], cpu, strict=True):
        lat, outcomes = step["latency_ms"], step["outcomes"]
        errors = step["requests"] - outcomes["approved"] - outcomes["declined"]
        shares = "  ".join(f"{name} {share:.0f}" for name, share in step_cpu.items())
        print(
            f"  {step['target_per_s']:>8} {step['per_s']:>11,.0f} {step['answered_per_s']:>11,.0f}"
            f" {step['skipped']:>8} {errors:>7} {lat['p50']:>7.1f} {lat['p99']:>7.1f}  {shares}"
        )
    past, steps_run = knee(report["steps"]), report["steps"]
    if past is None:
        named = "none: every step kept up"
    elif past == 0:
        named = f"at or below the first step ({steps_run[0]['target_per_s']}/s)"
    else:
        below, above = steps_run[past - 1]["target_per_s"], steps_run[past]["target_per_s"]
        named = f"between {below}/s and {above}/s"
    print("  ('machine' = every process on the host, other agents' included; 200 = both cores)")
    print(f"  codes {report['load_response_codes']}; knee {named}")
    return {**_figures(report), "step_cpu_percent": cpu, "knee": named}


def main() -> None:
    runs = os.environ.get("POSP_BENCH_FLEET_RUNS", "mixed,steps").split(",")
    figures: dict[str, Any] = {}
    if "mixed" in runs:
        _fleet_machine_cost()
        seconds = float(os.environ.get("POSP_BENCH_SECONDS", "60"))
        terminals = int(os.environ.get("POSP_BENCH_TERMINALS", "2000"))
        concurrency = int(os.environ.get("POSP_BENCH_CONCURRENCY", "64"))
        figures["mixed"] = fleet_against_stack(seconds, terminals, concurrency)
    if "steps" in runs:
        steps = os.environ.get("POSP_BENCH_STEPS", "500x30,1000x30,1500x30,2000x30")
        step_terminals = int(os.environ.get("POSP_BENCH_STEP_TERMINALS", "1500"))
        figures["steps"] = step_load(steps, step_terminals)
    print("  (shared 2-core machine, all processes and other engineers' jobs on it: pessimistic)")
    if out := os.environ.get("POSP_BENCH_OUT"):
        Path(out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
