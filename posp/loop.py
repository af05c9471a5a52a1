"""The event loop every posp program runs on: uvloop when installed.

uvloop's transports write and read in C; on the switch's hot path (thousands
of small frames a second on terminal, HSM and network sockets) that is a large
share of the CPU.  The stock asyncio loop stays the fallback where uvloop does
not build (it is optional off Linux/macOS).  Programs log :func:`loop_name` at
start so an operator can check which loop is actually running.

For servers (``server=True``: they allocate many short-lived objects per
request) the cyclic garbage collector is tuned: the objects alive at start
(modules, settings, tables) are frozen out of its scans and its first
generation runs every ``GC_GEN0_THRESHOLD`` allocations instead of 700.
Reference counting still frees almost everything at once; only cycles wait a
little longer.

Servers also raise their own open-files soft limit (RLIMIT_NOFILE) to the hard
limit at start (:func:`raise_open_files_limit`): every terminal, HSM and network
connection is a descriptor, and many systems start processes at a soft limit of
1024 while allowing far more.  Only the process's own soft limit changes; the hard
limit is the administrator's, and the server warns when it is below what
``limits.max_connections`` needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

from posp.log import get_logger

T = TypeVar("T")

#: Net allocations between first-generation collections (CPython's default: 700).
GC_GEN0_THRESHOLD = 50_000
#: Descriptors a server needs besides its connections (listeners, store, HSM, logs).
OPEN_FILES_HEADROOM = 256

_log = get_logger("posp.loop")


def tune_gc() -> None:
    """Freeze what exists now out of the collector's scans; collect less often."""
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def run(main: Coroutine[Any, Any, T], *, server: bool = False, stock: bool = False) -> T:
    """``asyncio.run(main)`` on a uvloop event loop (the stock loop without uvloop, or
    with ``stock``: a process that only supervises others and must spawn them with
    its signal mask, which libuv resets); a long-running ``server`` also gets the
    collector tuned (module docstring)."""
    if server:
        tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    if stock:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


@contextlib.contextmanager
def on_signal(sig: signal.Signals, callback: Callable[[], None]) -> Iterator[bool]:
    """Run ``callback`` on the running loop at each ``sig`` while inside, through a
    Python-level handler rather than ``loop.add_signal_handler``: leaving puts the
    previous disposition back in one step, where removing a loop's handler first
    resets the signal to its default action (for SIGHUP, the end of the process: a
    hangup in that instant would kill a switch that is stopping cleanly).  Yields
    False, and handles nothing, where signals cannot be (not the main thread)."""
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)

    try:
        previous = signal.signal(sig, handler)
    except ValueError:
        yield False
        return
    try:
        yield True
    finally:
        signal.signal(sig, previous)


def loop_name() -> str:
    """The running loop's class as ``module.Class`` (``uvloop.Loop`` when on uvloop)."""
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


@dataclass(frozen=True, slots=True)
class OpenFilesLimit:
    """RLIMIT_NOFILE before and after :func:`raise_open_files_limit` (-1 = unlimited)."""

    before: int
    soft: int
    hard: int
    needed: int

    @property
    def sufficient(self) -> bool:
        return self.soft < 0 or self.soft >= self.needed


def raise_open_files_limit(
    max_connections: int = 0, *, headroom: int = OPEN_FILES_HEADROOM
) -> OpenFilesLimit | None:
    """Raise this process's soft open-files limit to its hard limit (to what
    ``max_connections`` + ``headroom`` needs when the hard limit is unlimited), log
    the result, and warn (WARNING) whenever the soft limit stays below what
    ``max_connections`` + ``headroom`` needs.
    None where the platform has no RLIMIT_NOFILE."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux/macOS
        return None
    unlimited = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + headroom
    target = max(soft, needed) if hard == unlimited else hard
    if soft != unlimited and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # e.g. a platform cap below the hard limit
            _log.warning("open_files_limit_not_raised", soft=soft, error=str(exc))
    now, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    result = OpenFilesLimit(
        before=_plain(soft, unlimited), soft=_plain(now, unlimited),
        hard=_plain(hard, unlimited), needed=needed,
    )  # fmt: skip
    _log.info(
        "open_files_limit", before=result.before, soft=result.soft, hard=result.hard,
        needed=needed,
    )  # fmt: skip
    if not result.sufficient:  # also when the hard limit covers the connections only
        _log.warning(
            "open_files_limit_too_low",
            hard=hard,
            soft=result.soft,
            needed=needed,
            max_connections=max_connections,
            hint="raise the hard limit (ulimit -Hn, LimitNOFILE=, ulimits:) or lower "
            "limits.max_connections",
        )
    return result


def _plain(limit: int, unlimited: int) -> int:
    return -1 if limit == unlimited else limit
