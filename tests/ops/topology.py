"""The no-Docker topology: every program as a real process on 127.0.0.1, with real
HAProxy and Prometheus, on free ports.

Invariants: every process started here is registered in :class:`Topology` and
stopped (SIGTERM, then SIGKILL after a grace period) by :meth:`Topology.stop`, even
when a later one fails to start; logs go to files in the work directory so a failure
can be read afterwards; nothing binds anything but 127.0.0.1.

The HAProxy health check lines are taken from ``deploy/haproxy/haproxy.cfg`` so the
test exercises the deployed check, not a copy.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posp.healthcheck import Unhealthy, check_hsm, check_issuer, check_switch

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEPLOY_HAPROXY = REPO / "deploy" / "haproxy" / "haproxy.cfg"
SCRAPE_INTERVAL_S = 1.0
STOP_GRACE_S = 15.0


def free_port() -> int:
    """A port free right now on 127.0.0.1 (the kernel's pick; tiny reuse race accepted)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(probe: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    """Call ``probe`` until it returns without raising; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            probe()
            return
        except (Unhealthy, OSError, ValueError) as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout_s} s: {last}")


def haproxy_health_check_lines() -> list[str]:
    """The health check lines of the deployed HAProxy configuration."""
    lines = [
        line.strip()
        for line in DEPLOY_HAPROXY.read_text().splitlines()
        if re.match(r"\s*(option httpchk|http-check )", line)
    ]
    assert lines, "deploy/haproxy/haproxy.cfg has no http-check"
    return lines


@dataclass
class Ports:
    hsm: int = field(default_factory=free_port)
    hsm_metrics: int = field(default_factory=free_port)
    issuer: int = field(default_factory=free_port)
    issuer_metrics: int = field(default_factory=free_port)
    switches: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    switch_metrics: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    haproxy: int = field(default_factory=free_port)
    haproxy_stats: int = field(default_factory=free_port)
    prometheus: int = field(default_factory=free_port)


class Topology:
    """Starts, watches and stops the processes; see the module docstring."""

    def __init__(self, work_dir: Path, store_url: str) -> None:
        self.work_dir = work_dir
        self.store_url = store_url
        self.store_urls: dict[int, str] = {}  # per switch index, overriding store_url
        self.ports = Ports()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    # --- processes --------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.work_dir / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=self.work_dir,
        )

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.work_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self, name: str) -> None:
        """SIGKILL: the instance dies without draining (the failure under test)."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    # --- the programs -------------------------------------------------------------------

    def switch_env(self, index: int) -> dict[str, str]:
        return {
            "POSP_NODE_ID": str(index + 1),
            "POSP_STORE_URL": self.store_urls.get(index, self.store_url),
            "POSP_HSM_URL": f"tcp://127.0.0.1:{self.ports.hsm}",
            "POSP_TERMINAL_PORT": str(self.ports.switches[index]),
            "POSP_METRICS_PORT": str(self.ports.switch_metrics[index]),
            "POSP_NETWORK__PORT": str(self.ports.issuer),
            "POSP_DATA_DIR": str(self.work_dir / f"switch{index + 1}"),
            "POSP_LOG__LEVEL": "warning",
        }

    def start_simulators(self) -> None:
        p = self.ports
        self.spawn(
            "hsm",
            [
                str(BIN / "hsm-sim"),
                "--port",
                str(p.hsm),
                "--metrics-port",
                str(p.hsm_metrics),
                "--log-level",
                "warning",
            ],
        )
        wait_until(lambda: check_hsm("127.0.0.1", p.hsm, 4, 1.0), "hsm-sim")
        self.spawn(
            "issuer",
            [
                str(BIN / "issuer-sim"),
                "serve",
                "--port",
                str(p.issuer),
                "--metrics-port",
                str(p.issuer_metrics),
                "--hsm",
                f"tcp://127.0.0.1:{p.hsm}",
            ],
            {"POSP_ISSUER_LOG_LEVEL": "warning"},
        )
        wait_until(lambda: check_issuer("127.0.0.1", p.issuer, 1.0), "issuer-sim")

    def provision_fleet(self, count: int) -> Path:
        fleet_file = self.work_dir / "fleet.json"
        argv = [str(BIN / "posp"), "terminal", "provision-fleet", "--count", str(count)]
        argv += ["--merchant", "898100000000077", "--prefix", "7700"]
        argv += ["--fleet-file", str(fleet_file)]
        done = subprocess.run(
            argv, env={**os.environ, **self.switch_env(0)}, capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return fleet_file

    def start_switches(self) -> None:
        accept = frozenset({"00", "97"})
        for index in (0, 1):
            self.spawn(f"switch{index + 1}", [str(BIN / "posp"), "serve"], self.switch_env(index))
        for index, port in enumerate(self.ports.switches):
            wait_until(
                lambda port=port: check_switch("127.0.0.1", port, "00000000", accept, 1.0),  # type: ignore[misc]
                f"switch{index + 1}",
            )

    def start_haproxy(self) -> None:
        p = self.ports
        servers = "\n".join(
            f"    server switch{i + 1} 127.0.0.1:{port} check port {metrics}"
            for i, (port, metrics) in enumerate(zip(p.switches, p.switch_metrics, strict=True))
        )
        checks = "\n".join(f"    {line}" for line in haproxy_health_check_lines())
        config = f"""global
    maxconn 4000
defaults
    mode tcp
    timeout connect 3s
    timeout client 330s
    timeout server 330s
    timeout check 3s
    retries 2
    option redispatch
frontend terminals
    bind 127.0.0.1:{p.haproxy}
    default_backend switches
backend switches
    balance leastconn
{checks}
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
frontend stats
    mode http
    bind 127.0.0.1:{p.haproxy_stats}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    stats enable
    stats uri /stats
"""
        path = self.work_dir / "haproxy.cfg"
        path.write_text(config)
        self.spawn("haproxy", ["haproxy", "-f", str(path), "-db"])
        wait_until(lambda: socket.create_connection(("127.0.0.1", p.haproxy), 1).close(), "HAProxy")

    def start_prometheus(self) -> None:
        p = self.ports
        jobs = {
            "posp-switch": [f"127.0.0.1:{port}" for port in p.switch_metrics],
            "hsm-sim": [f"127.0.0.1:{p.hsm_metrics}"],
            "issuer-sim": [f"127.0.0.1:{p.issuer_metrics}"],
            "haproxy": [f"127.0.0.1:{p.haproxy_stats}"],
        }
        scrape = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: {json.dumps(targets)}\n"
            for job, targets in jobs.items()
        )
        config = (
            f"global:\n  scrape_interval: {SCRAPE_INTERVAL_S:g}s\n"
            f"  evaluation_interval: {SCRAPE_INTERVAL_S:g}s\nscrape_configs:\n{scrape}"
        )
        path = self.work_dir / "prometheus.yml"
        path.write_text(config)
        self.spawn(
            "prometheus",
            [
                "prometheus",
                f"--config.file={path}",
                f"--web.listen-address=127.0.0.1:{p.prometheus}",
                f"--storage.tsdb.path={self.work_dir / 'tsdb'}",
            ],
        )
        wait_until(lambda: self.prometheus_get("/-/ready"), "Prometheus")

    def haproxy_server_status(self) -> dict[str, str]:
        """``{server: "UP" | "DOWN" | ...}`` of the switches backend (stats CSV)."""
        url = f"http://127.0.0.1:{self.ports.haproxy_stats}/stats;csv"
        with urllib.request.urlopen(url, timeout=5) as response:
            rows = response.read().decode().lstrip("# ").splitlines()
        header = rows[0].split(",")
        status: dict[str, str] = {}
        for row in rows[1:]:
            values = dict(zip(header, row.split(","), strict=False))
            if values.get("pxname") == "switches" and values.get("svname", "").startswith("sw"):
                status[values["svname"]] = values["status"]
        return status

    # --- Prometheus HTTP API ------------------------------------------------------------

    def prometheus_get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{self.ports.prometheus}{path}{query}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
        return json.loads(body) if path.startswith("/api/") else body

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        answer = self.prometheus_get("/api/v1/query", **params)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def query_scalar(self, expr: str, at: float | None = None) -> float:
        result = self.query(expr, at)
        return float(result[0]["value"][1]) if result else 0.0

    def targets_up(self) -> int:
        return int(self.query_scalar("sum(up)"))

    def wait_for_targets(self, count: int, timeout_s: float = 30.0) -> None:
        """Until ``count`` targets are up (Prometheus applies new targets after ~5 s)."""

        def probe() -> None:
            if self.targets_up() < count:
                raise ValueError(f"{self.targets_up()} of {count} targets up")

        wait_until(probe, "Prometheus targets", timeout_s)


class TcpForwarder:
    """A TCP relay to ``target`` on a free 127.0.0.1 port; ``close()`` drops the listener
    and every relayed connection at once (a store that dies under a running switch)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        try:  # wakes the blocked accept(); close() alone leaves the socket listening
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
