"""A per-store cache of registry rows (terminals, merchants) for the hot path.

Every financial request reads its terminal and merchant; at thousands of
requests a second those two reads cost more than the journal writes.  A caller
that can accept a bounded staleness asks ``get_terminal(id, max_age_s=…)`` and
may get a row read up to ``max_age_s`` ago.

Invariants:
* A row is served only when it was read at most ``max_age_s`` before (measured
  from when its read *started*, so the bound holds even for slow reads);
  ``max_age_s=0`` always reads the database.
* A change made through the same store instance is visible at once: every
  registry write forgets the affected row and bumps the generation, and a read
  that started before a forget never fills the cache (a slow read cannot put
  back a row older than the change).
* A change made elsewhere (the admin CLI in another process, another switch
  instance on the same PostgreSQL) becomes visible within ``max_age_s``.
* Absent rows are never cached (a terminal provisioned elsewhere is found by
  its first request); the cache is cleared when it exceeds ``max_rows``.
* Cached rows are shared between callers and must not be mutated.
* A row kept with a version (a ``row_version``, a view's fingerprint) may be
  *renewed* instead of read again: a query that started at time T found the
  same version in the database (``RegistryCache.revalidated`` running
  ``SqlStore._revalidate`` or ``TerminalManagement._revalidate``: one query for
  many rows), so the row was
  current at T and counts as read at T.  A renewal never makes a row look older, and
  applies only to the very object that was checked.
* A check looks only at rows asked for within ``CHECK_IDLE_AFTER_S``; rows past
  their bound and idle longer are dropped instead.  One check runs at a time
  per cache (``SharedCheck``); a caller whose row it does not cover reads the
  row at once instead of waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar

from posp.errors import StoreError
from posp.log import get_logger

V = TypeVar("V")

_log = get_logger("posp.store.registry_cache")

DEFAULT_MAX_ROWS: Final = 100_000


#: A row past its bound that no caller asked for in this long is dropped by the
#: next check instead of being checked (it is read again if it is ever asked for).
CHECK_IDLE_AFTER_S: Final = 60.0


class RegistryCache(Generic[V]):
    """Rows by id: each with the monotonic time its read started, its version
    when known (None: never checked, only read again), and when a caller last
    asked for it; see the module docstring."""

    def __init__(self, what: str = "rows", max_rows: int = DEFAULT_MAX_ROWS) -> None:
        #: key -> [read started, value, version, last asked for]
        self._rows: dict[str, list[Any]] = {}
        self._max_rows = max_rows
        self.generation = 0
        #: One check at a time of the rows past their bound (``revalidated``).
        self._check = SharedCheck(what)

    def get(self, key: str, max_age_s: float) -> V | None:
        """The cached row if it was read at most ``max_age_s`` ago, else None."""
        if max_age_s <= 0:
            return None
        hit = self._rows.get(key)
        if hit is None:
            return None
        now = time.monotonic()
        hit[3] = now
        if now - hit[0] > max_age_s:
            return None
        value: V = hit[1]
        return value

    def put(
        self,
        key: str,
        value: V,
        generation: int,
        read_started_s: float,
        version: object = None,
    ) -> None:
        """Keep ``value`` unless the registry changed since its read started."""
        if generation != self.generation:
            return
        if len(self._rows) >= self._max_rows:
            self._rows.clear()
        self._rows[key] = [read_started_s, value, version, read_started_s]

    def expired(self, key: str, max_age_s: float) -> bool:
        """Whether ``key`` is held, with a version, but read more than ``max_age_s`` ago."""
        hit = self._rows.get(key)
        return hit is not None and hit[2] is not None and time.monotonic() - hit[0] > max_age_s

    def stale(self, max_age_s: float) -> dict[str, tuple[V, object]]:
        """Every row held with a version, read more than ``max_age_s`` ago and asked
        for within ``CHECK_IDLE_AFTER_S``: what a check should look at.  Rows past
        the bound and idle longer are dropped here (a check's cost follows the
        rows in use, not every row ever cached)."""
        now = time.monotonic()
        oldest, idle = now - max_age_s, now - CHECK_IDLE_AFTER_S
        found: dict[str, tuple[V, object]] = {}
        for key, (read_s, value, version, asked_s) in list(self._rows.items()):
            if version is None or read_s >= oldest:
                continue
            if asked_s < idle:
                del self._rows[key]
            else:
                found[key] = (value, version)
        return found

    async def revalidated(
        self,
        key: str,
        max_age_s: float,
        check: Callable[[dict[str, tuple[V, object]]], Awaitable[None]],
    ) -> V | None:
        """``key``'s row when it is held with a version but older than ``max_age_s``
        and ``check`` (run on every such row in use, ``stale``; one check at a time,
        shared) found it unchanged; None otherwise: the caller then reads the row."""
        if max_age_s <= 0 or not self.expired(key, max_age_s):
            return None
        covered = await self._check.covers(key, lambda: self.stale(max_age_s), check)
        return self.get(key, max_age_s) if covered else None

    def settle(
        self,
        stale: dict[str, tuple[V, object]],
        checked_s: float,
        unchanged: Callable[[str, V, object], bool],
    ) -> None:
        """A check that started at ``checked_s`` looked at the ``stale`` rows: renew
        those ``unchanged(key, value, version)`` accepts, drop the others."""
        for key, (value, version) in stale.items():
            if unchanged(key, value, version):
                self.renew(key, value, checked_s)
            else:
                self.drop(key, value)

    def renew(self, key: str, value: V, checked_s: float) -> None:
        """``value`` was found current by a check that started at ``checked_s``."""
        hit = self._rows.get(key)
        if hit is not None and hit[1] is value and hit[0] < checked_s:
            hit[0] = checked_s

    def drop(self, key: str, value: V) -> None:
        """``value`` changed in the database: drop it (not a newer read of ``key``)."""
        hit = self._rows.get(key)
        if hit is not None and hit[1] is value:
            del self._rows[key]

    def forget(self, key: str | None = None) -> None:
        """A write changed ``key`` (None: any row): drop it and void reads in flight."""
        self.generation += 1
        if key is None:
            self._rows.clear()
        else:
            self._rows.pop(key, None)


class SharedCheck:
    """One check at a time of a cache's rows past their bound, shared by the
    callers whose rows it covers (``RegistryCache.revalidated``)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._running: tuple[asyncio.Future[None], set[str]] | None = None

    async def covers(
        self,
        key: str,
        stale: Callable[[], dict[str, Any]],
        check: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> bool:
        """Start ``check(stale())`` unless a check runs; wait for the running one
        when it covers ``key``.  True when it covered ``key`` and ended without
        an error; False otherwise (the caller then reads the row itself, at once
        when the check under way does not cover it).  A check's error other than
        a StoreError is logged once, here."""
        running = self._running
        if running is None:
            rows = stale()
            started: asyncio.Future[None] = asyncio.ensure_future(check(rows))
            running = self._running = (started, set(rows))
            started.add_done_callback(self._done)
        future, keys = running
        if key not in keys:
            return False
        try:
            await asyncio.shield(future)
        except Exception:  # logged once (_done); the row's own read answers
            return False
        return True

    def _done(self, done: asyncio.Future[None]) -> None:
        if self._running is not None and self._running[0] is done:
            self._running = None
        if done.cancelled():
            return
        error = done.exception()  # retrieved here, whoever still waits
        if error is not None and not isinstance(error, StoreError):
            _log.error("cache check failed", rows=self._what, error_type=type(error).__name__)
