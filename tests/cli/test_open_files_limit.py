"""Servers raise their own RLIMIT_NOFILE soft limit to the hard limit at start and
warn when the hard limit is below ``limits.max_connections``.  Each case runs in a
child process started with a low soft limit, so the test runner's limit is untouched."""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

LOW_SOFT = 64
_PROBE = """
import json
from posp.log import configure_logging
from posp.loop import raise_open_files_limit
configure_logging("json", "info")
result = raise_open_files_limit({max_connections})
print(json.dumps([result.before, result.soft, result.hard, result.sufficient]), flush=True)
"""


def _limits(soft: int, hard: int | None = None) -> Callable[[], None]:
    """preexec_fn giving the child ``soft`` (and ``hard``) open files."""

    def apply() -> None:
        _, current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard if hard else current_hard))

    return apply


def _probe(max_connections: int, soft: int, hard: int | None = None) -> tuple[list[object], str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(max_connections=max_connections)],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=_limits(soft, hard),
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_soft_limit_is_raised_to_the_hard_limit_and_logged() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    (before, soft, child_hard, sufficient), log = _probe(100, LOW_SOFT)
    assert before == LOW_SOFT
    assert soft == child_hard == (-1 if hard == resource.RLIM_INFINITY else hard)
    assert sufficient is True
    assert '"event": "open_files_limit"' in log and f'"before": {LOW_SOFT}' in log


def test_hard_limit_below_max_connections_is_warned_about() -> None:
    (before, soft, hard, sufficient), log = _probe(20000, LOW_SOFT, hard=512)
    assert (before, soft, hard, sufficient) == (LOW_SOFT, 512, 512, False)
    assert "open_files_limit_too_low" in log and '"level": "warning"' in log


def test_hard_limit_between_connections_and_their_headroom_is_a_warning() -> None:
    """A hard limit above max_connections but below max_connections + headroom still
    leaves the server short of descriptors: logged at WARNING, not only at info."""
    from posp.loop import OPEN_FILES_HEADROOM

    hard = 400 + OPEN_FILES_HEADROOM // 2
    (_, soft, _, sufficient), log = _probe(400, LOW_SOFT, hard=hard)
    assert (soft, sufficient) == (hard, False)
    assert "open_files_limit_too_low" in log and '"level": "warning"' in log


def test_posp_serve_raises_its_own_soft_limit(tmp_path: Path) -> None:
    """``posp serve`` started with 64 open files logs the raised limit and serves."""
    env = dict(os.environ)
    env.update(
        POSP_TERMINAL_PORT="0",
        POSP_METRICS_ENABLED="false",
        POSP_NETWORK_ENABLED="false",
        POSP_LOG__FORMAT="json",
        POSP_LIMITS__MAX_CONNECTIONS="100",
    )
    env.pop("POSP_CONFIG", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "posp.cli", "serve", "--data-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_limits(LOW_SOFT),
    )
    assert child.stderr is not None
    lines = _read_lines(child.stderr)
    try:
        line = _wait_for_line(lines, '"open_files_limit"', timeout_s=20)
        logged = json.loads(line)
        assert logged["before"] == LOW_SOFT and logged["soft"] == logged["hard"]
        assert logged["soft"] == -1 or logged["soft"] > LOW_SOFT
        _wait_for_line(lines, "switch started", timeout_s=20)  # SIGTERM handled from here
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=20)
    assert child.returncode == 0


def _wait_for_line(lines: queue.Queue[str], needle: str, timeout_s: float) -> str:
    """The first line holding ``needle`` from ``lines`` (fed by a reader thread)."""
    deadline = time.monotonic() + timeout_s
    while (left_s := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left_s)
        except queue.Empty:
            break
        if needle in line:
            return line
    raise AssertionError(f"{needle} not logged")


def _read_lines(stream: IO[str]) -> queue.Queue[str]:
    """The stream's lines, read by a daemon thread (select() and buffered text do not mix)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines
