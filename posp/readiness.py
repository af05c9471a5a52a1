"""Readiness and liveness of a switch, as the load balancer and ``posp-healthcheck``
see them (``GET /ready``, ``GET /live`` on the metrics port).

Invariants:
* Ready means every dependency a purchase needs answers now: the store (a read
  query), the HSM (a connection up) and the card network link (signed on).  A switch
  that is not ready answers 503 with ``{"ready": false, "down": [...]}`` naming what
  is down, so HAProxy takes it out of rotation and an operator sees why.
* Each probe has a deadline (``timeout_s``); a probe that hangs or raises counts as
  down.  Probes run on the switch's event loop, concurrently; the HTTP thread waits
  for them at most ``timeout_s`` plus a margin, and an event loop that does not
  answer in time is itself "not live".
* Nothing here changes state: probes only read.  A change of readiness is logged
  once (WARNING naming what is down, info when ready again), not at every check.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final

from posp.log import get_logger

#: A readiness probe: True when the dependency is up.
Probe = Callable[[], Awaitable[bool]]
DEFAULT_TIMEOUT_S: Final = 1.0
_LOOP_MARGIN_S: Final = 0.5
_log = get_logger("posp.readiness")


@dataclass(frozen=True, slots=True)
class Readiness:
    down: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.down

    def answer(self) -> tuple[int, object]:
        """HTTP status and JSON body of ``/ready``."""
        return (200 if self.ready else 503), {"ready": self.ready, "down": list(self.down)}


async def _probe_ok(probe: Probe, timeout_s: float) -> bool:
    try:
        return bool(await asyncio.wait_for(probe(), timeout_s))
    except Exception:  # a failing dependency is "down", whatever it raised
        return False


async def check_readiness(
    probes: Mapping[str, Probe], timeout_s: float = DEFAULT_TIMEOUT_S
) -> Readiness:
    """Run every probe concurrently; the names of those that are down."""
    names = list(probes)
    results = await asyncio.gather(*(_probe_ok(probes[n], timeout_s) for n in names))
    return Readiness(tuple(n for n, ok in zip(names, results, strict=True) if not ok))


def store_probe(store: Any) -> Probe:
    """The store answers a read (the SAF depth: one cheap query on every backend)."""

    async def probe() -> bool:
        await store.saf_depth()
        return True

    return probe


def hsm_probe(hsm: Any) -> Probe:
    """A TCP HSM client has at least one connection up; an in-process HSM always does."""

    async def probe() -> bool:
        connected = getattr(hsm, "connected", None)
        return connected is None or int(connected) > 0

    return probe


def link_probe(link: Any) -> Probe:
    """The card network link is signed on; no link (network disabled) is not a fault."""

    async def probe() -> bool:
        return link is None or bool(link.signed_on)

    return probe


def switch_probes(store: Any, hsm: Any, link: Any) -> dict[str, Probe]:
    """The switch's three readiness probes, named as ``/ready`` reports them."""
    return {"store": store_probe(store), "hsm": hsm_probe(hsm), "network": link_probe(link)}


class LoopHealth:
    """``/ready`` and ``/live`` answers computed on ``loop`` for the HTTP thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        probes: Mapping[str, Probe],
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._loop = loop
        self._probes = dict(probes)
        self._timeout_s = timeout_s
        self._last_down: tuple[str, ...] = ()  # logged on change only, not every check

    def _on_loop(self, coro: Coroutine[Any, Any, Readiness]) -> Readiness | None:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self._timeout_s + _LOOP_MARGIN_S)
        except (concurrent.futures.TimeoutError, RuntimeError):
            future.cancel()
            return None

    def ready(self) -> tuple[int, object]:
        readiness = self._on_loop(check_readiness(self._probes, self._timeout_s))
        if readiness is None:
            readiness = Readiness(("event_loop",))
        if readiness.down != self._last_down:
            self._last_down = readiness.down
            if readiness.ready:
                _log.info("ready again")
            else:
                _log.warning("not ready", down=",".join(readiness.down))
        return readiness.answer()

    def live(self) -> tuple[int, object]:
        alive = self._on_loop(check_readiness({}, self._timeout_s)) is not None
        return (200 if alive else 503), {"live": alive}

    def routes(self) -> dict[str, Callable[[], tuple[int, object]]]:
        return {"/ready": self.ready, "/live": self.live}
