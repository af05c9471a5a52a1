"""The lab stack as separate processes, for fleet runs at scale: ``posp serve``
(SQLite store), optionally ``hsm-sim`` and ``issuer-sim serve``, and the
``posp-fleet`` run itself, each metered (CPU, RSS, fds) from ``/proc``.

Invariants: everything listens on 127.0.0.1; every process started here is
stopped by ``LabStack.close`` (SIGTERM, then SIGKILL after a grace period);
each process's output goes to a log file in the run directory, never a pipe
that could fill up and stall it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from terminals.procstat import ProcessMeter

BIN = Path(sys.executable).parent
MERCHANT_ID = "898100000000001"
STOP_GRACE_S = 15.0


#: Ports handed to the lab's processes come from below the kernel's ephemeral range
#: (32768-60999 by default): a port picked here and released until its process
#: binds it can then not be taken meanwhile by another socket's bind(0) or by an
#: outgoing connection.
_LAB_PORTS: Final = range(20000, 32000)
_rng = random.Random()


def free_port() -> int:
    """A port free right now on 127.0.0.1, outside the ephemeral range (the lab's
    processes take fixed ports)."""
    for _ in range(200):
        port = _rng.choice(_LAB_PORTS)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free lab port in 20000-31999")


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Return once ``port`` accepts connections; RuntimeError if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not listening after {timeout_s} s")


def wait_for_text(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    """Return once ``log`` contains ``text``; RuntimeError if the process died first."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"{log.name}: process exited with {process.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"{log.name} never said {text!r}")


@dataclass
class LabProcess:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    meter: ProcessMeter


@dataclass
class LabStack:
    """Processes of one run, sharing a run directory and an environment."""

    run_dir: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    processes: list[LabProcess] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], port: int) -> LabProcess:
        log = (self.run_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.run_dir
        )
        log.close()
        running = LabProcess(name, process, port, ProcessMeter(process.pid, name))
        self.processes.append(running)
        wait_for_port(port, process)
        running.meter.start()
        return running

    def start_hsm(self) -> LabProcess:
        port = free_port()
        argv = [str(BIN / "hsm-sim"), "--port", str(port), "--metrics-port", "0"]
        return self.spawn("hsm-sim", [*argv, "--log-level", "warning"], port)

    def start_issuer(self, hsm_url: str = "inprocess://") -> LabProcess:
        port = free_port()
        argv = [str(BIN / "issuer-sim"), "serve", "--port", str(port), "--hsm", hsm_url]
        return self.spawn("issuer-sim", argv, port)

    def switch_env(self, *, issuer_port: int | None, hsm_url: str) -> None:
        self.env.update(
            {
                "POSP_DATA_DIR": str(self.run_dir / "data"),
                "POSP_METRICS_ENABLED": "false",
                "POSP_LOG__LEVEL": "warning",
                "POSP_HSM_URL": hsm_url,
                "POSP_NETWORK_ENABLED": "false" if issuer_port is None else "true",
            }
        )
        if issuer_port is not None:
            self.env["POSP_NETWORK__PORT"] = str(issuer_port)

    def provision_fleet(self, count: int) -> Path:
        """``posp terminal provision-fleet``: ``count`` terminals, prefix 2."""
        fleet_file = self.run_dir / "fleet.json"
        argv = [str(BIN / "posp"), "terminal", "provision-fleet", "--count", str(count)]
        argv += ["--merchant", MERCHANT_ID, "--prefix", "2", "--fleet-file", str(fleet_file)]
        subprocess.run(argv, env=self.env, check=True, capture_output=True, cwd=self.run_dir)
        return fleet_file

    def start_switch(self) -> LabProcess:
        port = free_port()
        self.env["POSP_TERMINAL_PORT"] = str(port)
        return self.spawn("posp-serve", [str(BIN / "posp"), "serve"], port)

    def start_switches(self, count: int) -> list[LabProcess]:
        """``count`` ``posp serve`` processes on one terminal port (SO_REUSEPORT),
        node ids 1..count, one store; returns once every one listens (a fleet
        signing in earlier would put its long connections on the first only)."""
        port = free_port()
        self.env["POSP_TERMINAL_PORT"] = str(port)
        switches = []
        for index in range(count):
            name = f"posp-serve-{index + 1}"
            node = {"POSP_NODE_ID": str(index + 1), "POSP_REUSE_PORT": "true"}
            log = self.run_dir / f"{name}.log"
            process = subprocess.Popen(
                [str(BIN / "posp"), "serve"],
                env={**self.env, **node, "PYTHONUNBUFFERED": "1"},
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                cwd=self.run_dir,
            )
            running = LabProcess(name, process, port, ProcessMeter(process.pid, name))
            self.processes.append(running)
            wait_for_text(log, "listening on", process)
            running.meter.start()
            switches.append(running)
        return switches

    def run_fleet(self, fleet_args: list[str], *, tick_s: float = 0.5) -> dict[str, Any]:
        """Run ``posp-fleet`` to completion, metering it and every process of the
        stack; returns its JSON report plus ``processes`` (per-process figures)
        and ``started_at`` / ``ended_at`` (``time.perf_counter`` times)."""
        report_path = self.run_dir / "fleet-report.json"
        argv = [str(BIN / "posp-fleet"), *fleet_args, "--quiet", "--json", str(report_path)]
        log = (self.run_dir / "posp-fleet.log").open("wb")
        started_at = time.perf_counter()
        fleet = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        fleet_meter = ProcessMeter(fleet.pid, "posp-fleet")
        fleet_meter.start()
        meters = [fleet_meter, *(p.meter for p in self.processes)]
        stop = threading.Event()

        def meter_loop() -> None:
            while not stop.wait(tick_s):
                for meter in meters:
                    meter.tick()

        sampler = threading.Thread(target=meter_loop, daemon=True)
        sampler.start()
        try:
            returncode = fleet.wait()
        finally:
            stop.set()
            sampler.join()
        for meter in meters[1:]:
            meter.tick()
        ended_at = time.perf_counter()
        if returncode != 0:
            log_text = (self.run_dir / "posp-fleet.log").read_text(errors="replace")
            raise RuntimeError(f"posp-fleet exited with {returncode}: {log_text[-2000:]}")
        report: dict[str, Any] = json.loads(report_path.read_text())
        report["processes"] = [m.to_json() for m in meters]
        report["started_at"], report["ended_at"] = started_at, ended_at
        report["meters"] = meters
        return report

    def close(self) -> None:
        for running in reversed(self.processes):
            if running.process.poll() is None:
                running.process.send_signal(signal.SIGTERM)
        for running in reversed(self.processes):
            try:
                running.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait()
        self.processes.clear()
