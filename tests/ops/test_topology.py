"""The deployment topology without Docker: PostgreSQL, hsm-sim, issuer-sim, two
``posp serve`` instances (node ids 1 and 2, one PostgreSQL), real HAProxy and real
Prometheus, all on 127.0.0.1 with free ports; the fleet drives HAProxy, one switch is
SIGKILLed mid-run.

Run: ``make test-slow`` or ``pytest -m slow tests/ops/test_topology.py -s`` (``-s``
prints the figures).  Needs ``apt-get install -y haproxy prometheus`` and PostgreSQL at
``POSP_TEST_PG_DSN``; skips with a message otherwise.

Prometheus vs fleet counts: the killed instance's counters are known to Prometheus only
up to its last scrape before the kill, so Prometheus may miss up to one scrape interval
of that instance's answers (plus answers the switch counted but the dying process never
delivered).  The comparison therefore allows the fleet's request rate times two scrape
intervals, plus the requests that ended in a timeout or broken connection.  HAProxy's
health-check echoes reach the switches too; they are excluded by ``txn_type!="echo"``
(the fleet sends none).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posp.healthcheck import check_switch
from tests.ops.test_deploy_static import dashboard
from tests.ops.topology import BIN, SCRAPE_INTERVAL_S, TcpForwarder, Topology, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TERMINALS = 40
RATE_PER_S = 150.0
LOAD_S = 24.0
KILL_AFTER_S = 10.0
ANSWERED_EVENTS = ("mac_failure", "bad_response")
ACCEPT = frozenset({"00", "97"})  # an answer arrived (and was counted)


@pytest.fixture
def topology(tmp_path: Path, pg_dsn: str) -> Iterator[Topology]:
    missing = [tool for tool in ("haproxy", "prometheus") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed (apt-get install -y haproxy prometheus)"
        )
    schema = f"ops_{secrets.token_hex(4)}"
    joiner = "&" if "?" in pg_dsn else "?"
    topo = Topology(tmp_path, f"{pg_dsn}{joiner}schema={schema}")
    try:
        yield topo
    finally:
        topo.stop()
        subprocess.run(
            ["psql", pg_dsn, "-q", "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
            capture_output=True,
            timeout=30,
        )


def run_fleet(topo: Topology, fleet_file: Path, report_file: Path) -> subprocess.Popen[bytes]:
    argv = [str(BIN / "posp-fleet"), "--fleet-file", str(fleet_file), "--host", "127.0.0.1"]
    argv += ["--port", str(topo.ports.haproxy), "--rate", str(RATE_PER_S)]
    argv += ["--duration", str(LOAD_S), "--long-connections", "--timeout-s", "5"]
    argv += ["--ramp-up", "2", "--seed", "7", "--json", str(report_file), "--quiet"]
    log = (topo.work_dir / "fleet.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=topo.work_dir)


def fleet_answered(report: dict[str, Any]) -> int:
    """Requests the switches answered, as the fleet saw them (all phases)."""
    codes: dict[str, int] = report["response_codes"]
    return sum(n for code, n in codes.items() if len(code) == 2) + sum(
        codes.get(event, 0) for event in ANSWERED_EVENTS
    )


def test_fleet_through_haproxy_survives_losing_a_switch(topology: Topology) -> None:
    """One switch SIGKILLed under load: the other keeps answering, every request ends in
    an answer or a timeout/comms error (reversed by the terminal), and Prometheus'
    counters agree with the fleet within the killed instance's last scrape interval."""
    topo = topology
    topo.start_simulators()
    fleet_file = topo.provision_fleet(TERMINALS)
    topo.start_switches()
    topo.start_haproxy()
    topo.start_prometheus()
    topo.wait_for_targets(5)  # every program and HAProxy is scraped

    report_file = topo.work_dir / "fleet-report.json"
    fleet = run_fleet(topo, fleet_file, report_file)
    killed_at: list[float] = []

    def kill_switch1() -> None:
        topo.kill("switch1")
        killed_at.append(time.time())

    killer = threading.Timer(KILL_AFTER_S, kill_switch1)
    killer.start()
    try:
        assert fleet.wait(timeout=LOAD_S + 90) == 0, topo.log_tail("fleet")
    finally:
        killer.cancel()
    assert killed_at, "switch1 was killed during the run"
    time.sleep(3 * SCRAPE_INTERVAL_S)  # the survivor's final counts are scraped
    report = json.loads(report_file.read_text())

    answered = 'posp_requests_total{txn_type!="echo"}'
    per_instance = {
        r["metric"]["instance"]: float(r["value"][1])
        for r in topo.query(f"sum by (instance) (max_over_time({answered}[10m]))")
    }
    killed_instance = f"127.0.0.1:{topo.ports.switch_metrics[0]}"
    survivor_instance = f"127.0.0.1:{topo.ports.switch_metrics[1]}"
    survivor_at_kill = topo.query_scalar(
        f'sum(max_over_time({answered[:-1]},instance="{survivor_instance}"}}[1m]))',
        at=killed_at[0],
    )
    survivor_final = per_instance.get(survivor_instance, 0.0)
    prom_total = sum(per_instance.values())
    fleet_total = fleet_answered(report)
    unanswered = report["timeouts"] + report["comms_errors"]
    allowance = RATE_PER_S * 2 * SCRAPE_INTERVAL_S + unanswered

    print(
        "\n--- topology figures (2 shared cores, other work running: pessimistic) ---\n"
        f"fleet through HAProxy: {report['requests']} requests in {report['duration_s']} s"
        f" = {report['requests_per_s']} /s; latency ms {report['latency_ms']}\n"
        f"fleet response codes: {report['response_codes']}\n"
        f"fleet answered (all phases): {fleet_total}; timeouts {report['timeouts']},"
        f" comms errors {report['comms_errors']}, reversals sent {report['reversals_sent']}\n"
        f"Prometheus answered (echo excluded): total {prom_total:.0f} by instance"
        f" {per_instance} (killed: {killed_instance})\n"
        f"survivor answered after the kill: {survivor_final - survivor_at_kill:.0f}\n"
        f"difference fleet - Prometheus: {fleet_total - prom_total:.0f}"
        f" (allowed +-{allowance:.0f})"
    )

    assert killed_instance in per_instance and survivor_instance in per_instance
    assert survivor_final - survivor_at_kill > RATE_PER_S, "the survivor kept serving"
    assert report["mac_failures"] == 0
    assert report["response_codes"].get("bad_response", 0) == 0
    assert unanswered == 0 or report["reversals_sent"] > 0, "unanswered requests are reversed"
    assert abs(fleet_total - prom_total) <= allowance
    codes = report["response_codes"]
    assert codes.get("00", 0) > report["requests"] / 2, "most transactions approved"


def test_switch_whose_store_dies_is_taken_out_of_haproxy_rotation(
    topology: Topology, pg_dsn: str
) -> None:
    """switch2 reaches PostgreSQL through a relay; the relay is closed: its GET /ready
    turns 503 ("store" down) and HAProxy marks it DOWN within its check interval
    (inter 1 s x fall 2, plus the probe's 1 s deadline); switch1 stays UP and terminals
    through HAProxy keep being answered."""
    topo = topology
    pg = urllib.parse.urlsplit(pg_dsn)
    relay = TcpForwarder((pg.hostname or "127.0.0.1", pg.port or 5432))
    topo.store_urls[1] = topo.store_url.replace(
        f"{pg.hostname}:{pg.port or 5432}", f"127.0.0.1:{relay.port}"
    )
    try:
        topo.start_simulators()
        topo.start_switches()
        topo.start_haproxy()
        wait_until(lambda: _expect_status(topo, "UP", "UP"), "both switches UP in HAProxy")
        relay.close()
        started = time.monotonic()
        wait_until(lambda: _expect_status(topo, "UP", "DOWN"), "switch2 DOWN", timeout_s=10)
        print(f"\nswitch2 out of rotation {time.monotonic() - started:.1f} s after its store died")
        with urllib.request.urlopen(
            f"http://127.0.0.1:{topo.ports.switch_metrics[0]}/ready", timeout=5
        ) as ready:
            assert ready.status == 200
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{topo.ports.switch_metrics[1]}/ready")
            raise AssertionError("switch2 /ready answered 200 with its store gone")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and "store" in json.loads(exc.read())["down"]
        for _ in range(10):  # every new terminal connection lands on a ready switch
            line = check_switch("127.0.0.1", topo.ports.haproxy, "00000000", ACCEPT, 3.0)
            assert "39=97" in line
    finally:
        relay.close()


def _expect_status(topo: Topology, switch1: str, switch2: str) -> None:
    status = topo.haproxy_server_status()
    if (status.get("switch1"), status.get("switch2")) != (switch1, switch2):
        raise ValueError(f"HAProxy says {status}")


def test_every_dashboard_query_is_valid_promql_on_live_data(topology: Topology) -> None:
    """Prometheus accepts every Grafana panel query (``$__rate_interval`` as 30s) and the
    core switch panels return series once the programs are scraped."""
    topo = topology
    topo.start_simulators()
    topo.start_switches()
    topo.start_prometheus()
    topo.wait_for_targets(4)
    time.sleep(3 * SCRAPE_INTERVAL_S)
    empty = []
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "30s")
            if not topo.query(expr):
                empty.append(panel["title"])
    print(f"\npanels without data on an idle stack: {sorted(set(empty))}")
    assert "Signed-in terminals" not in empty and "Network link state" not in empty
