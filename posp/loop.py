"""The event loop every posp program runs on: uvloop when installed.

uvloop's transports write and read in C; on the switch's hot path (thousands
of small frames a second on terminal, HSM and network sockets) that is a large
share of the CPU.  The stock asyncio loop stays the fallback where uvloop does
not build (it is optional off Linux/macOS).  Programs log :func:`loop_name` at
start so an operator can check which loop is actually running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a uvloop event loop (the stock loop without uvloop)."""
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
