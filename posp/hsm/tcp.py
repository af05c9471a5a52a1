"""TCP HSM transport: a pool of pipelined connections, replies matched by header.

Invariants:
* Each connection numbers its requests with a numeric header counter; a reply
  is matched to its call by header only, never by order.  A header is not
  reused while its call is pending or while its reply is overdue (so a late
  reply can never be taken for a newer call's answer).
* Every call has a deadline (``timeout_s``): past it the call raises
  ``HsmTimeout``; a reply arriving later is counted in ``stats.late_replies``.
* A broken connection fails all its pending calls with ``HsmUnavailable`` at
  once and reconnects in the background with exponential backoff and full
  jitter (``posp.backoff``).  When no
  connection is up a call fails fast with ``HsmUnavailable``; it never waits
  for a reconnect.
* Requests written in one event-loop turn leave in one ``transport.write``.
* Calls fill the first connection with room before using the next (up to
  ``max_in_flight`` each): requests of one loop turn then share one write on
  this side and one read and one reply write on the HSM's, instead of one per
  connection; the other connections carry the overflow and stand by.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections import deque

from prometheus_client.registry import CollectorRegistry

from posp.backoff import Backoff
from posp.errors import HsmTimeout, HsmUnavailable
from posp.hsm.connection import HsmConnection
from posp.hsm.stats import HsmClientStats, StatsCollector


class TcpTransport:
    """HsmTransport over ``connections`` pipelined TCP connections to one HSM;
    the :class:`~posp.hsm.connection.ConnectionOwner` of those connections."""

    #: The keys stay inside the HSM: nothing secret in this process.
    holds_keys_in_process = False

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connections: int = 4,
        header_length: int = 4,
        timeout_s: float = 2.0,
        max_in_flight_per_connection: int = 256,
        reconnect_backoff_s: tuple[float, float] = (0.05, 2.0),
        registry: CollectorRegistry | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str = "",
    ) -> None:
        if not 1 <= header_length <= 9:
            raise ValueError("header_length must be 1..9 digits so replies can be matched")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.header_length = header_length
        self.stats = HsmClientStats()
        # Half the header space at most, so a free header is always found quickly.
        self.max_in_flight = max(1, min(max_in_flight_per_connection, 10**header_length // 2))
        self._connections = connections
        self._backoff_s = reconnect_backoff_s
        self._ssl = ssl_context  # payShield-style TLS on the host port (posp.tls)
        self._server_name = server_name or host
        self._live: list[HsmConnection] = []
        self._supervisors: list[asyncio.Task[None]] = []
        self._capacity_waiters: deque[asyncio.Future[None]] = deque()
        self._started = False
        self._closed = False
        if registry is not None:
            registry.register(
                StatsCollector(self.stats, lambda: self.connected, lambda: self.in_flight)
            )

    # --- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Open the pool; returns once every connection made its first attempt.

        Never raises for an unreachable HSM: the connections keep retrying in
        the background and calls fail with ``HsmUnavailable`` meanwhile.
        """
        if self._started:
            return
        self._started = True
        first_attempts = [
            asyncio.get_running_loop().create_future() for _ in range(self._connections)
        ]
        self._supervisors = [
            asyncio.create_task(self._supervise(done), name=f"hsm-conn-{i}")
            for i, done in enumerate(first_attempts)
        ]
        await asyncio.wait(first_attempts, timeout=self.timeout_s)

    async def wait_connected(self, count: int = 1, timeout_s: float = 5.0) -> None:
        """Wait until at least ``count`` connections are up (HsmTimeout otherwise)."""
        if not self._started:
            await self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self._live) < count:
            if loop.time() >= deadline:
                raise HsmTimeout(f"fewer than {count} HSM connections up after {timeout_s} s")
            await asyncio.sleep(0.01)

    @property
    def connected(self) -> int:
        """Number of connections currently up."""
        return len(self._live)

    @property
    def in_flight(self) -> int:
        return sum(len(conn.pending) for conn in self._live)

    async def close(self) -> None:
        """Stop reconnecting, close every connection, fail pending calls."""
        self._closed = True
        for task in self._supervisors:
            task.cancel()
        for conn in list(self._live):
            conn.fail_all("HSM client closed")
            conn.close()
        self._live.clear()
        for task in self._supervisors:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wake_capacity_waiters(HsmUnavailable("HSM client closed"))

    # --- the call path ---------------------------------------------------------

    async def exchange(self, request: bytes) -> bytes:
        """One request, one reply (after the header), within ``timeout_s``."""
        if not self._started:
            await self.start()
        self.stats.calls += 1
        conn = self._pick()
        if conn is None:
            conn = await self._wait_for_capacity()
        reply = await conn.submit(request, self.timeout_s)
        if reply[2:4] != b"00":
            self.stats.errors += 1
        return reply

    def _pick(self) -> HsmConnection | None:
        """The first live connection with room (see the module docstring)."""
        live = self._live
        if not live:
            self.stats.unavailable += 1
            raise HsmUnavailable(f"no connection to the HSM at {self.host}:{self.port}")
        limit = self.max_in_flight
        for conn in live:
            if len(conn.pending) < limit:
                return conn
        return None

    async def _wait_for_capacity(self) -> HsmConnection:
        """All connections are full: wait (within the call's deadline) for a free slot."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            self._capacity_waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                self.stats.timeouts += 1
                raise HsmTimeout("HSM pool saturated until the deadline") from None
            finally:
                if not waiter.done():
                    waiter.cancel()
            conn = self._pick()
            if conn is not None:
                return conn

    def slot_freed(self) -> None:
        """A connection finished a call: let one capacity waiter try again."""
        waiters = self._capacity_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_capacity_waiters(self, exc: BaseException) -> None:
        while self._capacity_waiters:
            waiter = self._capacity_waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

    # --- connection supervision ------------------------------------------------

    async def _supervise(self, first_attempt: asyncio.Future[None]) -> None:
        """Keep one connection up: connect, wait for it to drop, back off, repeat."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(*self._backoff_s)
        ever_connected = False
        while not self._closed:
            factory = functools.partial(HsmConnection, self, self.header_length)
            try:
                async with asyncio.timeout(self.timeout_s):
                    _, conn = await loop.create_connection(
                        factory,
                        self.host,
                        self.port,
                        ssl=self._ssl,
                        server_hostname=self._server_name if self._ssl is not None else None,
                    )
            except (OSError, TimeoutError, ssl.SSLError):
                self.stats.connect_failures += 1
                if not first_attempt.done():
                    first_attempt.set_result(None)
                await asyncio.sleep(backoff.next_s())
                continue
            if ever_connected:
                self.stats.reconnects += 1
            ever_connected = True
            backoff.reset()
            self._live.append(conn)
            if not first_attempt.done():
                first_attempt.set_result(None)
            try:
                await conn.closed
            finally:
                if conn in self._live:
                    self._live.remove(conn)
                conn.close()
            if not self._closed:
                await asyncio.sleep(backoff.next_s())

    def connection_lost(self, conn: HsmConnection) -> None:
        """A connection broke: calls stop picking it (its supervisor reconnects)."""
        if conn in self._live:
            self._live.remove(conn)
