"""The fault-test stack: ``hsm-sim``, ``issuer-sim serve --db --durable`` and one or
two ``posp serve`` as real processes on 127.0.0.1, each of which a test can
``kill -9`` and restart on the same port and the same files.

Invariants: every process started here is registered and stopped by
:meth:`FaultStack.close` (SIGTERM, SIGKILL after a grace period) even when a test
fails half-way; a restart reuses the port, the data directory and the store, so
terminals reach the new process where they reached the old one; each process
appends its output to a log file in the run directory (restarts included), so a
failure can be read afterwards and the issuer's per-0420 lines survive its kills.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import signal
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from issuer_sim.cardfile import DEMO_CARDS
from posp.lab.fleetfile import FleetTerminal, read_fleet_file
from tests.terminals.processes import BIN, MERCHANT_ID, free_port, wait_for_port

STOP_GRACE_S = 15.0
#: Demo cards with the large daily limit (the first two have a small one).
CARD_ROWS = slice(2, 12)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: what was hit, how, and when (UTC)."""

    target: str
    action: str
    at: dt.datetime


def write_cards(path: Path) -> list[dict[str, str]]:
    """The card file the issuer loads: ten active demo cards with a large limit."""
    with DEMO_CARDS.open(newline="") as source:
        rows = [r for r in csv.DictReader(source) if r["status"] == "active"][CARD_ROWS]
    with path.open("w", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


@dataclass
class FaultStack:
    """See the module docstring.  ``store_url`` None = SQLite in the data directory."""

    run_dir: Path
    store_url: str | None = None
    switch_count: int = 1
    network_timeout_s: float = 5.0
    hsm_url: str = "inprocess://"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    cards: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("hsm", "issuer", "control", *self.switch_names):
            self.ports[name] = free_port()
        self.cards = write_cards(self.run_dir / "cards.csv")

    @property
    def switch_names(self) -> list[str]:
        return [f"switch{i + 1}" for i in range(self.switch_count)]

    @property
    def issuer_db(self) -> Path:
        return self.run_dir / "issuer.db"

    @property
    def issuer_logs(self) -> list[Path]:
        return [self.run_dir / "issuer.log"]

    @property
    def sqlite_path(self) -> Path:
        return self.run_dir / "data" / "posp.db"

    # --- processes --------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``name`` (appending to its log) and wait until its port listens."""
        previous = self.processes.get(name)
        if previous is not None and previous.poll() is None:
            raise RuntimeError(f"{name} is still running")
        with (self.run_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                cwd=self.run_dir,
            )
        wait_for_port(self.ports[name], self.processes[name])

    def kill(self, name: str) -> None:
        """``kill -9``: the process dies without draining (the fault under test)."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self.faults.append(Fault(name, "kill -9", dt.datetime.now(dt.UTC)))

    def stop(self, name: str) -> None:
        """SIGTERM and wait (the issuer flushes its ledger and closes its file)."""
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def close(self) -> None:
        """Stop every process, the last started first."""
        for name in reversed(list(self.processes)):
            self.stop(name)

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.run_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # --- the programs -----------------------------------------------------------------

    def start_hsm(self, port: int | None = None) -> None:
        """hsm-sim on its port (or ``port``: a fault proxy may sit on the HSM's port)."""
        argv = [str(BIN / "hsm-sim"), "--port", str(port or self.ports["hsm"])]
        self.spawn("hsm", [*argv, "--metrics-port", "0", "--log-level", "warning"])
        self.hsm_url = f"tcp://127.0.0.1:{self.ports['hsm']}"

    def start_issuer(self, *, latency_ms: float = 0.0, drop_rate: float = 0.0) -> None:
        """issuer-sim with its ledger in a SQLite file, durable (every answer's change
        committed before it leaves), its control endpoint, and one log line per 0420."""
        argv = [str(BIN / "issuer-sim"), "serve", "--port", str(self.ports["issuer"])]
        argv += ["--control-port", str(self.ports["control"]), "--db", str(self.issuer_db)]
        argv += ["--cards", str(self.run_dir / "cards.csv"), "--durable"]
        argv += ["--latency-ms", str(latency_ms), "--drop-rate", str(drop_rate)]
        self.spawn("issuer", argv, {"POSP_ISSUER_LOG_LEVEL": "info"})
        wait_for_port(self.ports["control"], self.processes["issuer"])

    def switch_env(self, name: str) -> dict[str, str]:
        index = self.switch_names.index(name)
        env = {
            "POSP_NODE_ID": str(index + 1),
            "POSP_TERMINAL_PORT": str(self.ports[name]),
            "POSP_METRICS_ENABLED": "false",
            "POSP_HSM_URL": self.hsm_url,
            "POSP_NETWORK__PORT": str(self.ports["issuer"]),
            "POSP_NETWORK__TIMEOUT_S": str(self.network_timeout_s),
            "POSP_NETWORK__RECONNECT_MIN_S": "0.05",
            "POSP_NETWORK__RECONNECT_MAX_S": "0.5",
            "POSP_DATA_DIR": str(self.run_dir / ("data" if index == 0 else f"data{index + 1}")),
            "POSP_LOG__LEVEL": "warning",
            # Orphaned pending entries are resolved within seconds, not the default 30 s.
            "POSP_RECOVERY__SWEEP_INTERVAL_S": "0.5",
            "POSP_RECOVERY__IN_DOUBT_GRACE_S": "2",
        }
        if self.store_url is not None:
            env["POSP_STORE_URL"] = self.store_url
        else:  # every instance on the one SQLite file (only one instance with SQLite)
            env["POSP_STORE_URL"] = f"sqlite:///{self.sqlite_path}"
        return env

    def start_switch(self, name: str = "switch1") -> None:
        self.spawn(name, [str(BIN / "posp"), "serve"], self.switch_env(name))

    def restart_switch(self, name: str = "switch1") -> None:
        self.kill(name)
        self.start_switch(name)

    def provision(self, count: int) -> list[FleetTerminal]:
        """``count`` terminals in the switch's store (``posp terminal provision-fleet``)."""
        fleet_file = self.run_dir / "fleet.json"
        argv = [str(BIN / "posp"), "terminal", "provision-fleet", "--count", str(count)]
        argv += ["--merchant", MERCHANT_ID, "--prefix", "3", "--fleet-file", str(fleet_file)]
        env = {**os.environ, **self.switch_env(self.switch_names[0])}
        done = subprocess.run(argv, env=env, capture_output=True, cwd=self.run_dir, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"provision-fleet failed: {done.stderr.decode(errors='replace')}")
        return read_fleet_file(fleet_file)

    # --- the issuer's control endpoint --------------------------------------------------

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['control']}{path}",
            data=data,
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())

    def set_rules(self, **rules: Any) -> None:
        self.control("/rules", rules)

    def received(self, mti: str) -> int:
        """Requests of ``mti`` the issuer has received since its start."""
        return int(self.control("/traffic")["received"].get(mti, 0))
