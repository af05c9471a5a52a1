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
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Net allocations between first-generation collections (CPython's default: 700).
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Freeze what exists now out of the collector's scans; collect less often."""
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def run(main: Coroutine[Any, Any, T], *, server: bool = False) -> T:
    """``asyncio.run(main)`` on a uvloop event loop (the stock loop without uvloop);
    a long-running ``server`` also gets the collector tuned (module docstring)."""
    if server:
        tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def loop_name() -> str:
    """The running loop's class as ``module.Class`` (``uvloop.Loop`` when on uvloop)."""
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"
