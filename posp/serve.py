"""``posp serve``: run the switch in this process until SIGINT/SIGTERM; SIGHUP
reloads the risk ruleset.

Invariant: every component started here is stopped here (an ``AsyncExitStack``),
also when a later one fails to start; a signal only sets an event, the drain
runs in the normal flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from contextlib import AsyncExitStack

from rich.console import Console

from posp.settings import Settings
from posp.switch import Switch

# --- shutdown signals ------------------------------------------------------------


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT/SIGTERM while inside; restore the handlers after."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signals here: the caller stops us instead
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@contextlib.contextmanager
def reload_on_sighup(switch: Switch) -> Iterator[None]:
    """SIGHUP reloads the risk ruleset (``risk.ruleset_path``) while inside: the
    holder swaps it atomically between requests; a file that does not load is
    logged and the rules in force stay."""
    loop = asyncio.get_running_loop()
    risk = switch.risk
    if risk is None:
        yield
        return
    try:
        loop.add_signal_handler(signal.SIGHUP, risk.holder.reload)
    except (NotImplementedError, RuntimeError, ValueError):
        yield  # not the main thread (tests reload through the holder itself)
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


# --- the switch -------------------------------------------------------------------


async def start_switch(settings: Settings, stack: AsyncExitStack) -> Switch:
    """Start a :class:`posp.switch.Switch` and register its graceful stop on ``stack``."""
    switch = Switch(settings)
    await switch.start()
    stack.push_async_callback(switch.stop)
    return switch


async def serve(settings: Settings, out: Console, stop: asyncio.Event | None = None) -> None:
    """``posp serve``: run the switch until SIGINT/SIGTERM (or ``stop`` is set)."""
    stop = stop or asyncio.Event()
    with stop_on_signals(stop):
        async with AsyncExitStack() as stack:
            switch = await start_switch(settings, stack)
            stack.enter_context(reload_on_sighup(switch))
            out.print(
                f"posp switch listening on {settings.listen_host}:{switch.port} (Ctrl-C to stop)",
                highlight=False,
            )
            await stop.wait()
            out.print("stopping: draining in-flight requests", highlight=False)
