"""``posp serve --workers N``: N switch processes on one host and one terminal port.

One Python process runs one event loop on one core; ``--workers`` applies the
scale-out model (distinct node ids, one shared store) on a single host.  The
supervisor (this module) starts N children ``posp serve`` with, for worker ``i``
(0-based):

* ``node_id = settings.node_id + i`` (inside every RRN, so RRNs never collide),
* ``metrics_port = settings.metrics_port + i``,
* ``reuse_port = true``: every child listens on ``terminal_port`` and the kernel
  (SO_REUSEPORT, Linux) spreads new terminal connections over them.

Invariants: the supervisor forwards SIGINT/SIGTERM to every child and waits for
them (each drains its own requests); it forwards SIGHUP (reload the risk rules) too,
also to a child still starting, which is spawned with SIGHUP blocked and unblocks it
once it handles it.  When one child exits, an ERROR log line names it (index, pid,
node id, exit code or signal), the others are stopped too and the supervisor returns
the first non-zero exit status (0 if all ended cleanly).  It checks the derived node
ids and ports before starting any.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from rich.console import Console

from posp.admin import AdminError
from posp.log import get_logger
from posp.loop import on_signal
from posp.settings import Settings

MAX_NODE_ID = 99
_log = get_logger("posp.workers")


def check_workers(settings: Settings, workers: int) -> None:
    """AdminError naming what the N workers cannot share or derive."""
    if not 1 <= workers <= 64:
        raise AdminError("--workers", "between 1 and 64")
    if workers == 1:
        return
    if settings.terminal_port == 0:
        raise AdminError("--workers", "needs a fixed terminal_port (0 would differ per worker)")
    if settings.node_id + workers - 1 > MAX_NODE_ID:
        raise AdminError(
            "--workers", f"node ids {settings.node_id}..{settings.node_id + workers - 1} pass 99"
        )
    if settings.metrics_enabled and settings.metrics_port + workers - 1 > 65535:
        raise AdminError("--workers", "metrics ports pass 65535")
    if settings.store_url.startswith("sqlite://") and ":memory:" in settings.store_url:
        raise AdminError("--workers", "workers cannot share an in-memory store")


def worker_env(settings: Settings, index: int) -> dict[str, str]:
    """The environment of worker ``index``: its node id, metrics port, reuse_port."""
    env = dict(os.environ)
    env["POSP_NODE_ID"] = str(settings.node_id + index)
    env["POSP_METRICS_PORT"] = str(settings.metrics_port + index)
    env["POSP_REUSE_PORT"] = "true"
    return env


async def run_workers(
    settings: Settings, workers: int, child_args: Sequence[str], out: Console
) -> int:
    """Start ``workers`` children ``posp serve <child_args>``; return when all ended."""
    command = [sys.executable, "-m", "posp.cli", "serve", *child_args]
    children: list[asyncio.subprocess.Process] = []
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stopping.set)
    # SIGHUP reaches the workers; leaving puts the handler from before back in one
    # step (posp.loop.on_signal), so a hangup while stopping is never fatal here.
    with on_signal(signal.SIGHUP, lambda: _forward_hangup(children)):
        try:
            for index in range(workers):
                children.append(await _spawn(command, worker_env(settings, index)))
            out.print(
                f"posp: {workers} workers on {settings.listen_host}:{settings.terminal_port}"
                f" (node ids {settings.node_id}..{settings.node_id + workers - 1})",
                highlight=False,
            )
            waits = [asyncio.ensure_future(child.wait()) for child in children]
            stop_wait = asyncio.ensure_future(stopping.wait())
            await asyncio.wait([*waits, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if not stopping.is_set():
                _log_deaths(settings, children)
        finally:
            _terminate(children)
            codes = [await child.wait() for child in children]
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
    failed = [code for code in codes if code not in (0, -signal.SIGTERM)]
    return abs(failed[0]) if failed else 0


async def _spawn(command: Sequence[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start one worker with SIGHUP blocked: a reload forwarded while it starts stays
    pending until its ``main()`` has a handler for it (then unblocks), so it is
    neither lost nor fatal.  (The supervisor runs on the stock asyncio loop, whose
    fork keeps the signal mask; libuv's resets it.)"""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        return await asyncio.create_subprocess_exec(*command, env=env)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _log_deaths(settings: Settings, children: list[asyncio.subprocess.Process]) -> None:
    """One ERROR line per worker that ended on its own: index, pid, node id, and its
    exit code or the signal that killed it (the others are stopped next)."""
    for index, child in enumerate(children):
        code = child.returncode
        if code is None:
            continue
        ended = {"exit_code": code} if code >= 0 else {"signal": signal.Signals(-code).name}
        _log.error(
            "worker died, stopping the others",
            worker=index,
            pid=child.pid,
            node_id=settings.node_id + index,
            **ended,
        )


def _forward_hangup(children: list[asyncio.subprocess.Process]) -> None:
    """SIGHUP (reload the risk ruleset) to every running worker."""
    for child in children:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGHUP)


def _terminate(children: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM to every child still running (each drains, then exits)."""
    for child in children:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
