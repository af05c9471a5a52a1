"""Approved PIN purchases per second through the FULL path, each piece its own
process: fleet (this process, terminals.fleet) → ``posp serve`` (SQLite) →
``hsm-sim`` (TCP) and ``issuer-sim serve`` (its own in-process HSM).

Targets (issue 19): ≥ 2,500 approved PIN purchases/s (moonshot 3,000) for 60 s
with p99 ≤ 100 ms and ≤ 350 µs of switch CPU per purchase (closed loop); offered
1,500/s (open loop), every request approved with no skipped tick and p99 ≤ 100 ms.
``POSP_BENCH_SECONDS`` shortens the run (default 60); ``POSP_BENCH_TERMINALS``
sets the fleet size (default 48).  By default the loop is closed (one worker
per terminal, each sending its next purchase as soon as the last is answered):
that measures capacity, and latency then follows from the fleet size (Little's
law: mean latency = terminals / rate), so 48 terminals — enough to keep both
switch processes busy, few enough not to queue — is the default; 96 gives the
same rate at twice the latency.  ``POSP_BENCH_RATE=1500`` runs an open loop
instead: one purchase every 1/rate s on an idle terminal whatever the answers
do, the direct check of "1,500/s with p99 <= 100 ms" (use ~200 terminals so an
idle one is always there; a tick that finds none is counted as skipped).
``POSP_BENCH_SWITCHES`` the number of ``posp serve`` processes sharing the
terminal port (``reuse_port``, node ids 1..N) and the store (default 2);
``POSP_BENCH_PG=postgresql://user@host:port/db`` puts the store in a fresh
PostgreSQL schema (dropped afterwards) instead of a SQLite file; the switches'
connections then carry an ``application_name`` of their own, and when the
server runs on this machine the CPU of those backends (from /proc) is printed
as ``postgres`` — the server's share of each purchase, other clients left out.
``POSP_BENCH_RISK`` = ``both`` (default), ``on``, ``off`` or ``ladder``: the risk
rules (default ruleset) on or off in the switches; ``both`` interleaves
``POSP_BENCH_ROUNDS`` (default 2) pairs of runs, off then on, each a fresh
stack, and prints the mean approved/s of each and their ratio (target: rules
on >= 95 % of rules off).  ``ladder`` interleaves, per round, rules off and
four rulesets cut from the default one (:data:`LADDER`: the rules that keep no
counter, then one counter, the hard limits, all of it) and prints each one's
rate against rules off: what the counters' store work costs, rung by rung.
The cards are a lab pool (``posp.lab.cardpool``, ``POSP_BENCH_CARDS``, default
200) so that no card passes the rules' 100,000.00 card-day cap: every decline
would be a fault.
``POSP_BENCH_WARMUP_S`` (seconds, default 0) runs that many seconds of the same
purchases, closed loop and unmeasured, on the same stack before each measured
run, so that the run measures a journal that has already grown (a fresh store
is what a short run measures otherwise); the two runs' traces are kept apart.
With the risk rules on, the pool's cards pass the card-day cap after about
2,000 purchases each (400,000 with 200 cards): raise ``POSP_BENCH_CARDS`` for
long warm-ups.
``POSP_BENCH_STORES=both`` (with ``POSP_BENCH_PG``, and ``POSP_BENCH_RISK`` off
or on) interleaves ``POSP_BENCH_ROUNDS`` rounds of the SQLite store and the
PostgreSQL store, the order swapped every round, and prints each round's
PostgreSQL/SQLite ratio, the ratio of the means and the verdicts of issue 19's
store targets (PostgreSQL >= 90 % of SQLite, its server <= 250 µs per purchase).
Prints the rate, the slowest whole second, latency percentiles, each process's
CPU (share of one core) and issue 19's verdicts: closed loop >= 2,500 approved/s
(moonshot 3,000) for 60 s with p99 <= 100 ms, every switch process together
<= 350 µs of CPU per approved purchase; open loop 1,500/s offered for 60 s, all
approved, no skipped tick, p99 <= 100 ms; on PostgreSQL its server <= 250 µs.
On the shared 2-core development machine the figures are pessimistic.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from issuer_sim.cardfile import read_card_file
from posp.lab.cardpool import write_card_pool
from posp.lab.fleetfile import read_fleet_file
from posp.loop import loop_name
from posp.loop import run as run_loop
from posp.risk.ruleset import default_ruleset_text
from terminals.cards import TerminalCard, load_cards
from terminals.fleet import FleetConfig, run_fleet
from terminals.fleet_stats import FleetStats
from terminals.state import MAX_TRACE

BIN = Path(sys.executable).parent
MERCHANT_ID = "898100000000001"
#: Balance and daily limit a card needs to be used here (1,000,000.00 CNY each):
#: 90,000 purchases of at most 50.00 over the pool's cards stay far below both,
#: and below the risk rules' card-day cap, so every decline would be a fault.
AMPLE_MINOR = 100_000_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_for_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


#: A fresh schema per run when the store is PostgreSQL (POSP_BENCH_PG).
PG_SCHEMA = f"bench_{os.getpid()}_{int(time.time())}"


def store_url(data_dir: Path) -> str:
    pg = os.environ.get("POSP_BENCH_PG", "")
    if not pg:
        return f"sqlite:///{data_dir / 'posp.db'}"
    return f"{pg}?schema={PG_SCHEMA}&application_name={PG_SCHEMA}"


async def pg_backend_pids() -> list[int]:
    """Process ids of the PostgreSQL backends serving this run's switches."""
    pg = os.environ.get("POSP_BENCH_PG", "")
    return await backends_named(pg, PG_SCHEMA) if pg else []


async def backends_named(dsn: str, application_name: str) -> list[int]:
    """Process ids of the PostgreSQL backends whose connections carry ``application_name``."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        found = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", application_name
        )
    finally:
        await connection.close()
    return [int(r["pid"]) for r in found]


def pg_backends_cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each backend still running and readable (the server is local)."""
    used: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            used[pid] = cpu_s(pid)
    return used


def drop_pg_schema() -> None:
    pg = os.environ.get("POSP_BENCH_PG", "")
    if not pg:
        return
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(pg)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
        await connection.close()

    run_loop(drop())


def switch_env(
    data_dir: Path, hsm_port: int, network_port: int, terminal_port: int
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "POSP_DATA_DIR": str(data_dir),
            "POSP_STORE_URL": store_url(data_dir),
            "POSP_HSM_URL": f"tcp://127.0.0.1:{hsm_port}",
            "POSP_TERMINAL_PORT": str(terminal_port),
            "POSP_NETWORK__PORT": str(network_port),
            "POSP_METRICS_ENABLED": "false",
            "POSP_LOG__LEVEL": "warning",
        }
    )
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for_line(log: Path, text: str, timeout_s: float = 60.0) -> None:
    """Wait until ``log`` contains ``text`` (a switch says it listens)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{log.name} never said {text!r}")


def start_switches(
    count: int, env: dict[str, str], data: Path
) -> dict[str, subprocess.Popen[bytes]]:
    """``count`` ``posp serve`` processes on one terminal port (SO_REUSEPORT), node
    ids 1..count, one store; returns once each one listens."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for index in range(count):
        name = "posp serve" if count == 1 else f"posp serve {index + 1}"
        node_env = {**env, "POSP_NODE_ID": str(index + 1), "POSP_REUSE_PORT": "true"}
        node_env["PYTHONUNBUFFERED"] = "1"  # its "listening on" line reaches the log now
        log = data / f"switch-{index + 1}.log"
        procs[name] = start([str(BIN / "posp"), "serve"], node_env, log)
        wait_for_line(log, "listening on")
    return procs


@contextlib.contextmanager
def full_stack(
    terminals: int,
    switches: int,
    issuer_env: dict[str, str] | None = None,
    *,
    risk: bool = True,
    cards_file: Path | None = None,
    ruleset: Path | None = None,
) -> Iterator[tuple[dict[str, subprocess.Popen[bytes]], Path, int]]:
    """``hsm-sim``, ``issuer-sim serve`` (``issuer_env`` added to its environment; the
    card pool ``cards_file`` when given) and ``switches`` × ``posp serve`` (risk rules
    on or off; ``ruleset`` instead of the default one when given) in a temporary
    directory with ``terminals`` provisioned: (the processes, the fleet file, the
    terminal port); everything is stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-purchase-") as tmp:
        data = Path(tmp)
        hsm_port, net_port, term_port = free_port(), free_port(), free_port()
        env = switch_env(data, hsm_port, net_port, term_port)
        env["POSP_RISK__ENABLED"] = "true" if risk else "false"
        if ruleset is not None:
            env["POSP_RISK__RULESET_PATH"] = str(ruleset)
        cards = [] if cards_file is None else ["--cards", str(cards_file)]
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            procs["hsm-sim"] = start(
                [
                    *(str(BIN / "hsm-sim"), "--port", str(hsm_port), "--metrics-port", "0"),
                    *("--log-level", "warning"),
                ],
                env,
                data / "hsm.log",
            )
            procs["issuer-sim"] = start(
                [
                    *(str(BIN / "issuer-sim"), "serve", "--port", str(net_port)),
                    *cards,
                    *("--db", str(data / "issuer.db")),
                ],
                {**env, "POSP_ISSUER_LOG_LEVEL": "warning", **(issuer_env or {})},
                data / "issuer.log",
            )
            wait_for_port(hsm_port)
            fleet_file = data / "fleet.json"
            provision = [str(BIN / "posp"), "terminal", "provision-fleet", "--count"]
            provision += [str(terminals), "--merchant", MERCHANT_ID, "--prefix", "7"]
            provision += ["--fleet-file", str(fleet_file)]
            subprocess.run(provision, env=env, check=True, capture_output=True)
            wait_for_port(net_port)
            procs.update(start_switches(switches, env, data))
            wait_for_port(term_port)
            yield procs, fleet_file, term_port
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            drop_pg_schema()


def run(
    seconds: float,
    terminals: int,
    switches: int,
    rate: float | None,
    *,
    risk: bool = True,
    rule_ids: tuple[str, ...] | None = None,
) -> Measured:
    """One run on a fresh stack: its approved purchases per second and the switches'
    CPU per purchase.  ``rule_ids``: only those rules of the default ruleset
    (:func:`ruleset_of`)."""
    with tempfile.TemporaryDirectory(prefix="bench-cards-") as tmp:
        cards_file = write_card_pool(Path(tmp) / "cards.csv", bench_card_count())
        ruleset = None if rule_ids is None else ruleset_of(rule_ids, Path(tmp) / "rules.toml")
        with full_stack(terminals, switches, risk=risk, cards_file=cards_file, ruleset=ruleset) as (
            procs,
            fleet_file,
            term_port,
        ):
            if not risk:
                print("risk rules OFF")
            elif rule_ids is None:
                print("risk rules ON (default ruleset)")
            else:
                print(f"risk rules ON: {', '.join(rule_ids)}")
            return run_loop(
                report_run(procs, fleet_file, cards_file, term_port, seconds, rate), server=True
            )


#: The ladder's rungs (``POSP_BENCH_RISK=ladder``): rules of the default ruleset
#: by id, each rung adding counters — none, the card's day, every declining rule
#: (the hard limits), then the whole default ruleset (None).
NO_COUNTER = ("single-amount", "block-list", "round-amount", "odd-amount", "region")
HARD_LIMITS = (
    "single-amount",
    "card-day-amount",
    "card-week-amount",
    "merchant-day-amount",
    "merchant-week-amount",
    "merchant-day-amount-quasi-cash",
    "fallback-per-terminal",
    "block-list",
)
LADDER: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("no counter", NO_COUNTER),
    ("one counter", (*NO_COUNTER, "card-day-amount")),
    ("hard limits", HARD_LIMITS),
    ("default", None),
)
RULES_HEADER = "\n[[rules]]\n"


def ruleset_of(rule_ids: tuple[str, ...], path: Path) -> Path:
    """The default ruleset with only the rules ``rule_ids`` (each must exist, once),
    in ``path``, its version marked as a cut.  Each ``[[rules]]`` block of the file
    is kept or left out whole, by the ``id`` TOML reads in it; the result is
    checked to hold exactly ``rule_ids``."""
    wanted = set(rule_ids)
    if len(wanted) != len(rule_ids):
        raise ValueError(f"a rule id appears twice in {rule_ids}")
    head, *blocks = default_ruleset_text().split(RULES_HEADER)
    kept = [b for b in blocks if tomllib.loads(b).get("id") in wanted]
    head = head.replace('version = "', 'version = "bench-cut-', 1)
    text = RULES_HEADER.join([head, *kept])
    found = [rule["id"] for rule in tomllib.loads(text).get("rules", [])]
    if sorted(found) != sorted(rule_ids):
        missing = sorted(wanted - set(found))
        raise ValueError(f"the default ruleset has no rule {', '.join(missing) or found}")
    path.write_text(text, encoding="utf-8")
    return path


def ladder(seconds: float, terminals: int, switches: int, rate: float | None) -> None:
    """Rules off and each rung of :data:`LADDER`, interleaved per round."""
    runs: dict[str, list[Measured]] = {name: [] for name in ("off", *(n for n, _ in LADDER))}
    for _ in range(int(os.environ.get("POSP_BENCH_ROUNDS", "2"))):
        runs["off"].append(run(seconds, terminals, switches, rate, risk=False))
        for name, rule_ids in LADDER:
            runs[name].append(run(seconds, terminals, switches, rate, rule_ids=rule_ids))
    off = sum(m.rate for m in runs["off"]) / len(runs["off"])
    print(
        "risk rules, rung by rung: mean approved/s over the rounds, against rules off,"
        " and the switches' CPU per approved purchase:"
    )
    for name, got in runs.items():
        mean = sum(m.rate for m in got) / len(got)
        switch_us = sum(m.switch_us for m in got) / len(got)
        each = ", ".join(f"{m.rate:,.0f}" for m in got)
        print(
            f"  {name:<12} {mean:7,.0f}/s  {mean / off if off else 0.0:6.1%}"
            f"  {switch_us:6,.0f} us  (runs {each})"
        )


#: Traces a terminal may use in a measured run after a warm-up: 57 minutes of
#: 3,500 purchases/s spread over 48 terminals (a longer run could wrap into the
#: warm-up's traces).
MEASURED_TRACES_MAX = 250_000


def bench_warmup_s() -> float:
    """``POSP_BENCH_WARMUP_S``: seconds of unmeasured load before each measured run."""
    return float(os.environ.get("POSP_BENCH_WARMUP_S", "0"))


def bench_card_count() -> int:
    return int(os.environ.get("POSP_BENCH_CARDS", "200"))


def ample_cards(cards_file: Path) -> list[TerminalCard]:
    """Active cards of the pool whose balance and daily limit outlast the run."""
    ample = {
        r.pan
        for r in read_card_file(cards_file)
        if r.status == "active"
        and r.balance_minor >= AMPLE_MINOR
        and r.daily_limit_minor >= AMPLE_MINOR
    }
    return [c for c in load_cards(cards_file) if c.active and c.pan in ample]


#: Issue 19's targets, each printed with its verdict.  Open loop: this rate offered
#: for TARGET_SECONDS, every purchase approved, no skipped tick, p99 <= TARGET_P99_MS.
OPEN_LOOP_RATE = 1500.0
#: Closed loop: approved/s for TARGET_SECONDS with p99 <= TARGET_P99_MS (and the moonshot).
CLOSED_LOOP_RATE = 2500.0
MOONSHOT_RATE = 3000.0
TARGET_P99_MS = 100.0
TARGET_SECONDS = 60.0
#: CPU per approved purchase: every switch process together, and the PostgreSQL
#: server's backends serving the switches (POSP_BENCH_PG on this machine).
SWITCH_CPU_US = 350.0
PG_SERVER_CPU_US = 250.0
#: The PostgreSQL store's approved/s against the SQLite store's (POSP_BENCH_STORES=both).
PG_RATIO = 0.90


class PerSecond:
    """Approved purchases in each whole second of the load phase (the fleet's
    progress hook, called every second)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.rates: list[int] = []

    def __call__(self, stats: FleetStats) -> None:
        if stats.load_started is None or stats.load_stopped is not None:
            return
        approved = stats.load_codes.get("00", 0)
        if self.last is not None:
            self.rates.append(approved - self.last)
        self.last = approved


class Measured(NamedTuple):
    """A run's approved purchases per second, its switches' CPU per purchase (µs)
    and, on PostgreSQL, the server's CPU per purchase (µs; None when not measured)."""

    rate: float
    switch_us: float
    pg_us: float | None = None


async def warm_up(config: FleetConfig, seconds: float) -> FleetConfig:
    """The same purchases for ``seconds``, closed loop and unmeasured, so that the
    measured run starts on a journal (SQLite file, PostgreSQL tables) that has
    already grown; returns the measured run's config.  Both runs are in one batch
    on one switch, so their traces are kept apart: the warm-up starts every
    terminal at trace 1 and the measured run after the last trace any terminal
    can have used (a trace sent again in the batch would be a duplicate, 94)."""
    warm = await run_fleet(
        replace(config, duration_s=seconds, rate=None, progress=None, first_trace=1)
    )
    # No terminal used more traces than the warm-up's exchanges in every phase.
    sent = warm.stats.requests
    first = sent + 1
    if first + MEASURED_TRACES_MAX > MAX_TRACE:
        raise SystemExit(
            f"POSP_BENCH_WARMUP_S={seconds:g}: the warm-up sent {sent:,} requests, too many"
            " for the measured run's traces to stay apart from its own"
        )
    refused = sum(n for code, n in warm.load_response_codes.items() if code != "00")
    print(
        f"warm-up: {warm.load_response_codes.get('00', 0):,} purchases approved"
        f" ({refused:,} not) in {seconds:g} s before the measured run"
    )
    return replace(config, first_trace=first)


async def report_run(
    procs: dict[str, subprocess.Popen[bytes]],
    fleet_file: Path,
    cards_file: Path,
    port: int,
    seconds: float,
    rate: float | None,
) -> Measured:
    cards = ample_cards(cards_file)
    per_second = PerSecond()
    config = FleetConfig(
        terminals=read_fleet_file(fleet_file),
        cards=cards,
        port=port,
        duration_s=seconds,
        mix={"purchase": 1},
        pin_ratio=1.0,
        ic_ratio=0.0,
        long_connections=True,
        seed=7,
        rate=rate,
        progress=per_second,
        progress_interval_s=1.0,
    )
    if warmup_s := bench_warmup_s():
        config = await warm_up(config, warmup_s)
    pg_before = pg_backends_cpu_s(await pg_backend_pids())
    cpu_before = {name: cpu_s(p.pid) for name, p in procs.items()}
    own_before = time.process_time()
    wall_start = time.perf_counter()
    report = await run_fleet(config)
    wall_s = time.perf_counter() - wall_start
    cpu_after = {name: cpu_s(p.pid) for name, p in procs.items()}
    pg_after = pg_backends_cpu_s(await pg_backend_pids())
    own_cpu_s = time.process_time() - own_before
    approved = report.load_response_codes.get("00", 0)  # the load window only
    approved_per_s = approved / report.duration_s
    loop = "closed loop" if rate is None else f"open loop at {rate:,.0f}/s"
    print(
        f"full-path PIN purchases, {len(config.terminals)} terminals, {len(cards)} cards,"
        f" {loop} on {loop_name()}, {sum(n.startswith('posp') for n in procs)} switch"
        " process(es)"
    )
    print(f"  duration {report.duration_s:.1f} s, requests {report.requests}")
    rates = per_second.rates
    slowest = min(rates) if rates else 0
    floor = CLOSED_LOOP_RATE if rate is None else rate
    below = sum(1 for r in rates if r < floor)
    print(
        f"  approved {approved}  ({approved_per_s:,.0f} approved/s;"
        f" slowest whole second {slowest:,}; {below} of {len(rates)} whole seconds"
        f" below {floor:,.0f})"
    )
    if rate is not None:
        print(f"  skipped ticks (no idle terminal) {report.skipped}")
    print(f"  response codes {dict(sorted(report.response_codes.items()))}")
    print(
        "  latency ms "
        + " ".join(
            f"{k}={v:.1f}" for k, v in report.latency_ms.items() if k in ("p50", "p90", "p99")
        )
    )
    print(f"  timeouts {report.timeouts}, comms errors {report.comms_errors}")
    print("  CPU: share of one core over the run, and CPU time per approved purchase")
    used_s = {name: cpu_after[name] - cpu_before[name] for name in procs}
    used_s["fleet"] = own_cpu_s
    if pg_after:  # a backend that connected during the run counts from zero
        used_s["postgres"] = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items())
    for name, cpu in used_s.items():
        per_txn_us = cpu / max(approved, 1) * 1e6
        print(f"    {name:<12} {cpu / wall_s:6.0%}  {per_txn_us:6.0f} us")
    total_us = sum(used_s.values()) / max(approved, 1) * 1e6
    switch_s = sum(cpu for name, cpu in used_s.items() if name.startswith("posp"))
    pg_us = used_s["postgres"] / max(approved, 1) * 1e6 if "postgres" in used_s else None
    measured = Measured(approved_per_s, switch_s / max(approved, 1) * 1e6, pg_us)
    print(
        f"    {'all':<12} {sum(used_s.values()) / wall_s:6.0%}  {total_us:6.0f} us"
        f"  (2 whole cores would allow {2e6 / total_us:,.0f}/s at this cost)"
    )
    p99 = report.latency_ms["p99"]
    if rate is None:
        met = (
            approved_per_s >= CLOSED_LOOP_RATE
            and p99 <= TARGET_P99_MS
            and report.duration_s >= TARGET_SECONDS
            and report.timeouts == 0
        )
        moonshot = met and approved_per_s >= MOONSHOT_RATE
        print(
            f"  target: >= {CLOSED_LOOP_RATE:,.0f} approved/s (moonshot {MOONSHOT_RATE:,.0f}) for"
            f" {TARGET_SECONDS:.0f} s with p99 <= {TARGET_P99_MS:.0f} ms:"
            f" {'MET, moonshot too' if moonshot else 'MET' if met else 'not met'}"
            f" ({approved_per_s:,.0f}/s, p99 {p99:.1f} ms, {report.duration_s:.0f} s)"
        )
        cpu_met = measured.switch_us <= SWITCH_CPU_US
        print(
            f"  target: switch CPU <= {SWITCH_CPU_US:.0f} us per approved purchase (every"
            f" switch process together): {'MET' if cpu_met else 'not met'}"
            f" ({measured.switch_us:.0f} us)"
        )
    else:  # the offered rate is fixed: what counts is keeping up with it
        stats = report.stats
        purchases = stats.by_type.get("purchase")
        bought = purchases.codes.get("00", 0) if purchases is not None else 0
        met = (
            rate >= OPEN_LOOP_RATE
            and stats.ticks >= int(rate * TARGET_SECONDS)  # every tick of the 60 s offered
            and stats.skipped == 0
            and bought == stats.ticks  # and each offered purchase approved
            and p99 <= TARGET_P99_MS
            and report.duration_s >= TARGET_SECONDS
            and report.timeouts == 0
        )
        print(
            f"  target (open loop): {OPEN_LOOP_RATE:,.0f}/s offered for {TARGET_SECONDS:.0f} s,"
            f" every purchase approved, no skipped tick, p99 <= {TARGET_P99_MS:.0f} ms:"
            f" {'MET' if met else 'not met'} ({rate:,.0f}/s offered, {bought:,} of"
            f" {stats.ticks:,} ticks approved, {stats.skipped} skipped, p99 {p99:.1f} ms,"
            f" {report.duration_s:.0f} s)"
        )
    if pg_us is not None:
        print(
            f"  target: PostgreSQL server CPU <= {PG_SERVER_CPU_US:.0f} us per approved purchase:"
            f" {'MET' if pg_us <= PG_SERVER_CPU_US else 'not met'} ({pg_us:.0f} us)"
        )
    return measured


@contextlib.contextmanager
def on_sqlite() -> Iterator[None]:
    """The runs inside on the SQLite store, ``POSP_BENCH_PG`` set aside meanwhile."""
    pg = os.environ.pop("POSP_BENCH_PG", None)
    try:
        yield
    finally:
        if pg is not None:
            os.environ["POSP_BENCH_PG"] = pg


def stores(seconds: float, terminals: int, switches: int, rate: float | None, risk: bool) -> None:
    """SQLite and PostgreSQL (``POSP_BENCH_PG``) interleaved, the order swapped
    every round so that drift on the shared machine hits both alike; each round's
    PostgreSQL/SQLite ratio, their means, and issue 19's verdicts."""
    runs: dict[str, list[Measured]] = {"sqlite": [], "postgres": []}
    for index in range(int(os.environ.get("POSP_BENCH_ROUNDS", "2"))):
        order = ("sqlite", "postgres") if index % 2 == 0 else ("postgres", "sqlite")
        for store in order:
            with on_sqlite() if store == "sqlite" else contextlib.nullcontext():
                runs[store].append(run(seconds, terminals, switches, rate, risk=risk))
    ratios = [pg.rate / sq.rate if sq.rate else 0.0 for sq, pg in zip(*runs.values(), strict=True)]
    sqlite, postgres = (sum(m.rate for m in got) / len(got) for got in runs.values())
    ratio = postgres / sqlite if sqlite else 0.0
    server = [m.pg_us for m in runs["postgres"] if m.pg_us is not None]
    print(
        f"PostgreSQL vs SQLite (risk rules {'on' if risk else 'off'}): {postgres:,.0f} vs"
        f" {sqlite:,.0f} approved/s on the mean = {ratio:.1%}; round by round"
        f" {', '.join(f'{r:.2f}' for r in ratios)}; switches' CPU per purchase"
        f" {', '.join(f'{m.switch_us:.0f}' for m in runs['postgres'])} us (PostgreSQL) against"
        f" {', '.join(f'{m.switch_us:.0f}' for m in runs['sqlite'])} us (SQLite)"
    )
    print(
        f"  target: PostgreSQL >= {PG_RATIO:.0%} of SQLite's approved/s:"
        f" {'MET' if ratio >= PG_RATIO else 'not met'} on the mean"
        f" ({sum(r >= PG_RATIO for r in ratios)} of {len(ratios)} rounds at or above it)"
    )
    if server:
        met = max(server) <= PG_SERVER_CPU_US
        print(
            f"  target: PostgreSQL server CPU <= {PG_SERVER_CPU_US:.0f} us per approved purchase:"
            f" {'MET in every round' if met else 'not met (a round above it)'}"
            f" ({', '.join(f'{u:.0f}' for u in server)} us)"
        )
    else:
        print("  PostgreSQL server CPU not measured (the server is not on this machine)")


def main() -> None:
    seconds = float(os.environ.get("POSP_BENCH_SECONDS", "60"))
    terminals = int(os.environ.get("POSP_BENCH_TERMINALS", "48"))
    switches = int(os.environ.get("POSP_BENCH_SWITCHES", "2"))
    rate = float(os.environ["POSP_BENCH_RATE"]) if os.environ.get("POSP_BENCH_RATE") else None
    mode = os.environ.get("POSP_BENCH_RISK", "both")
    if mode not in ("both", "on", "off", "ladder"):
        raise SystemExit(f"POSP_BENCH_RISK={mode!r}: both, on, off or ladder")
    store_mode = os.environ.get("POSP_BENCH_STORES", "")
    if store_mode not in ("", "both"):
        raise SystemExit(f"POSP_BENCH_STORES={store_mode!r}: both, or unset")
    if store_mode == "both":
        if not os.environ.get("POSP_BENCH_PG"):
            raise SystemExit("POSP_BENCH_STORES=both needs POSP_BENCH_PG (the PostgreSQL server)")
        if mode not in ("on", "off"):
            raise SystemExit("POSP_BENCH_STORES=both needs POSP_BENCH_RISK=off or on")
        stores(seconds, terminals, switches, rate, risk=mode == "on")
        return
    if mode == "ladder":
        ladder(seconds, terminals, switches, rate)
        return
    if mode != "both":
        run(seconds, terminals, switches, rate, risk=mode == "on")
        return
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(int(os.environ.get("POSP_BENCH_ROUNDS", "2"))):
        for risk in (False, True):  # interleaved: drift on the shared machine hits both
            rates[risk].append(run(seconds, terminals, switches, rate, risk=risk).rate)
    off, on = (sum(rates[k]) / len(rates[k]) for k in (False, True))
    ratio = on / off if off else 0.0
    print(
        f"risk rules on vs off: {on:,.0f} vs {off:,.0f} approved/s (runs on {rates[True]},"
        f" off {rates[False]}): {ratio:.1%} of rules-off;"
        f" target >= 95 %: {'MET' if ratio >= 0.95 else 'not met'}"
    )


if __name__ == "__main__":
    main()
