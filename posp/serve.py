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

from posp.loop import on_signal
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


_early_hangup = False


def remember_early_hangup(signum: int, frame: object) -> None:
    """SIGHUP handler from the start of ``posp serve`` until its event loop takes
    over: the reload is remembered for :class:`HangupReload`."""
    global _early_hangup
    _early_hangup = True


class HangupReload:
    """SIGHUP reloads the risk ruleset (``risk.ruleset_path``) for the whole life of
    ``posp serve``, so a hangup never kills a switch (its default action):

    * while the switch starts, a SIGHUP is remembered and the reload runs once the
      rules are in force (the file may have changed after it was read);
    * while it serves, the holder reloads at once and swaps atomically between
      requests; a file that does not load is logged and the rules in force stay;
    * once it stops (the drain), a SIGHUP does nothing, and after ``serve`` the
      handler from before is back (``posp.cli`` installs one that only remembers),
      so a worker stopping under ``--workers`` still exits 0.
    """

    def __init__(self) -> None:
        global _early_hangup
        self._switch: Switch | None = None
        self._pending, _early_hangup = _early_hangup, False
        self._stopping = False

    @property
    def pending(self) -> bool:
        """A SIGHUP came while starting; its reload runs once serving."""
        return self._pending

    def __call__(self) -> None:
        if self._stopping:
            return
        if self._switch is None:
            self._pending = True
            return
        if self._switch.risk is not None:
            self._switch.risk.holder.reload()

    def serving(self, switch: Switch) -> None:
        self._switch = switch
        if self._pending:
            self._pending = False
            self()

    def stopping(self) -> None:
        self._stopping = True


@contextlib.contextmanager
def reload_on_sighup(hangup: HangupReload) -> Iterator[None]:
    """Route SIGHUP to ``hangup`` while inside; the disposition from before comes
    back in one step after (``posp.loop.on_signal``: never the default action,
    which would end the process).  Outside the main thread nothing is routed
    (tests reload through the holder itself)."""
    with on_signal(signal.SIGHUP, hangup):
        yield


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
    hangup = HangupReload()
    with stop_on_signals(stop), reload_on_sighup(hangup):
        async with AsyncExitStack() as stack:
            switch = await start_switch(settings, stack)
            stack.callback(hangup.stopping)  # first thing the drain does
            hangup.serving(switch)
            out.print(
                f"posp switch listening on {settings.listen_host}:{switch.port} (Ctrl-C to stop)",
                highlight=False,
            )
            await stop.wait()
            out.print("stopping: draining in-flight requests", highlight=False)
