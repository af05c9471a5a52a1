"""``posp serve --workers N``: N switch processes (node ids node_id.., reuse_port)
on one terminal port, stopped together by one SIGTERM; bad combinations refused."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.cli.conftest import Posp

POSP = Path(sys.executable).parent / "posp"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT and /proc are Linux"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _node_id(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"POSP_NODE_ID="))


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _start_two_workers(
    tmp_path: Path,
    node_id: int,
    stderr: int,
    stdout: int = subprocess.DEVNULL,
    *,
    wait_listening: bool = True,
    log_level: str = "warning",
) -> tuple[subprocess.Popen[str], int]:
    """``posp serve --workers 2`` on a free port, returned once both children listen."""
    port = _free_port()
    env = {
        **os.environ,
        "POSP_TERMINAL_PORT": str(port),
        "POSP_METRICS_ENABLED": "false",
        "POSP_NETWORK_ENABLED": "false",
        "POSP_NODE_ID": str(node_id),
        "POSP_LOG__LEVEL": log_level,
        "POSP_LOG__FORMAT": "json",
    }
    env.pop("POSP_CONFIG", None)
    supervisor = subprocess.Popen(
        [str(POSP), "serve", "--workers", "2", "--data-dir", str(tmp_path)],
        env=env,
        stdout=stdout,
        stderr=stderr,
        text=True,
    )
    deadline = time.monotonic() + 30
    while (
        wait_listening
        and time.monotonic() < deadline
        and not (len(_children(supervisor.pid)) == 2 and _listening(port))
    ):
        time.sleep(0.1)
    return supervisor, port


def test_two_workers_listen_on_one_port_and_stop_on_one_sigterm(tmp_path: Path) -> None:
    supervisor, port = _start_two_workers(tmp_path, 7, subprocess.DEVNULL)
    try:
        children = _children(supervisor.pid)
        assert sorted(_node_id(child) for child in children) == ["7", "8"]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
        assert not any(Path(f"/proc/{child}").exists() for child in children)
        assert not _listening(port)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()


def test_a_worker_killed_by_a_signal_is_named_in_the_log(tmp_path: Path) -> None:
    """SIGKILL of one worker: the supervisor logs which one (index, pid, signal), then
    stops the other and exits non-zero."""
    supervisor, _ = _start_two_workers(tmp_path, 3, subprocess.PIPE)
    try:
        victim = max(_children(supervisor.pid), key=lambda pid: int(_node_id(pid)))
        os.kill(victim, signal.SIGKILL)
        _, err = supervisor.communicate(timeout=30)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    assert supervisor.returncode != 0
    died = [json.loads(line) for line in err.splitlines() if "worker died" in line]
    assert len(died) == 1, err
    assert (died[0]["worker"], died[0]["pid"], died[0]["node_id"]) == (1, victim, 4)
    assert died[0]["signal"] == "SIGKILL" and died[0]["level"] == "error"


def test_workers_need_a_fixed_terminal_port(posp: Posp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSP_TERMINAL_PORT", "0")
    result = posp("serve", "--workers", "2")
    assert result.code == 2
    assert "--workers" in result.err and "terminal_port" in result.err


def test_workers_whose_node_ids_pass_99_are_refused(
    posp: Posp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSP_NODE_ID", "98")
    result = posp("serve", "--workers", "3")
    assert result.code == 2
    assert "node ids 98..100" in result.err


class _Watch:
    """Reads a process's output stream in a thread, keeping its lines; ``seen`` is
    set once ``count`` lines containing ``text`` have come."""

    def __init__(self, stream: IO[str] | None, text: str, count: int = 2) -> None:
        assert stream is not None
        self.lines: list[str] = []
        self.seen = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream, text, count))
        self._thread.daemon = True
        self._thread.start()

    def _read(self, stream: IO[str], text: str, count: int) -> None:
        for line in stream:
            self.lines.append(line)
            if sum(text in seen for seen in self.lines) == count:
                self.seen.set()

    def text(self) -> str:
        self._thread.join(timeout=30)
        return "".join(self.lines)


def _stop(supervisor: subprocess.Popen[str]) -> None:
    """SIGTERM and wait (a kill if it did not stop)."""
    try:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=30)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()


def test_sighup_to_the_supervisor_reloads_the_ruleset_in_every_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGHUP is forwarded to each worker, which reloads ``risk.ruleset_path``; a file
    that no longer loads is logged by each and serving goes on (exit 0 at SIGTERM).
    The SIGTERM follows once both workers have logged their reload (the event itself)."""
    from posp.risk.ruleset import default_ruleset_text

    ruleset = tmp_path / "rules.toml"
    ruleset.write_text(default_ruleset_text())
    monkeypatch.setenv("POSP_RISK__RULESET_PATH", str(ruleset))
    supervisor, _ = _start_two_workers(tmp_path, 11, subprocess.PIPE, subprocess.PIPE)
    serving = _Watch(supervisor.stdout, "posp switch listening")
    refused = _Watch(supervisor.stderr, "not reloaded")
    try:
        assert serving.seen.wait(timeout=30), "both workers serving"  # each read the file
        ruleset.write_text('version = "broken"\n[[rules]]\nid = "x"\n')
        supervisor.send_signal(signal.SIGHUP)
        assert refused.seen.wait(timeout=30), "both workers refused the broken file"
    finally:
        _stop(supervisor)
    err = refused.text()
    assert supervisor.returncode == 0, err
    assert len([json.loads(line) for line in err.splitlines() if "not reloaded" in line]) == 2


def test_a_sighup_while_the_workers_start_is_neither_fatal_nor_lost(tmp_path: Path) -> None:
    """A reload forwarded to a worker still importing (spawned with SIGHUP blocked) or
    starting (remembered) reaches it: each logs one swap and all exit 0 at SIGTERM."""
    supervisor, _ = _start_two_workers(
        tmp_path, 21, subprocess.PIPE, subprocess.PIPE, wait_listening=False, log_level="info"
    )
    swapped = _Watch(supervisor.stderr, "risk ruleset swapped")
    try:
        assert supervisor.stdout is not None
        assert "workers" in supervisor.stdout.readline()  # both spawned, likely still starting
        supervisor.send_signal(signal.SIGHUP)
        assert swapped.seen.wait(timeout=30), "both workers swapped the ruleset"
    finally:
        _stop(supervisor)
    err = swapped.text()
    assert supervisor.returncode == 0, err
    assert "worker died" not in err
    assert len([json.loads(line) for line in err.splitlines() if "ruleset swapped" in line]) == 2
