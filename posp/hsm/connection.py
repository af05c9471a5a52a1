"""One pipelined HSM connection: an asyncio Protocol with header-keyed waiters.

Invariants:
* ``pending`` maps a header to the future of every call awaiting its reply;
  ``overdue`` holds headers whose deadline passed and whose reply has not come
  yet.  New headers avoid both sets.
* Deadlines live in a FIFO: all calls of a client share one timeout, so
  submission order is deadline order and a single timer (re-armed at most
  every ``SWEEP_SLACK_S``) serves every call instead of one timer per call.
  A call fails at most ``SWEEP_SLACK_S`` after its deadline.
* Too many overdue replies mean the peer is stuck: the connection is aborted,
  which fails every pending call and lets the client reconnect.
* Outgoing frames queued during one loop turn are written with one call.
* The connection knows its owner only as a :class:`ConnectionOwner` (its
  counters, its in-flight limit and two notifications), never its internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections import deque
from typing import Protocol, cast

from posp.errors import HsmTimeout, HsmUnavailable
from posp.hsm.stats import HsmClientStats

#: How late past its deadline a call may fail; bounds the timer's firing rate.
SWEEP_SLACK_S = 0.005


def configure_socket(sock: socket.socket | None) -> None:
    """TCP_NODELAY (small request/reply frames) and keepalive (dead peers)."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


@functools.cache
def _rendered_headers(length: int) -> tuple[bytes, ...]:
    """Every header of ``length`` digits, rendered once per process."""
    return tuple(b"%0*d" % (length, n) for n in range(10**length))


class ConnectionOwner(Protocol):
    """What a connection needs from the pool that owns it."""

    @property
    def stats(self) -> HsmClientStats:
        """Counters the connection bumps (timeouts, late and unmatched replies, ...)."""
        ...

    @property
    def max_in_flight(self) -> int:
        """Calls one connection may carry; as many overdue replies mean a stuck peer."""
        ...

    def slot_freed(self) -> None:
        """A call finished (answered or expired): a waiter for capacity may go on."""
        ...

    def connection_lost(self, conn: HsmConnection) -> None:
        """The connection broke: stop picking it."""
        ...


class HsmConnection(asyncio.Protocol):
    """Client side of one TCP connection to the HSM."""

    def __init__(self, owner: ConnectionOwner, header_length: int) -> None:
        self._owner = owner
        self._stats = owner.stats
        self._header_length = header_length
        self._header_space = 10**header_length
        self._counter = 0
        # Small header spaces are pre-rendered: a list index beats formatting per call.
        self._headers = _rendered_headers(header_length) if header_length <= 4 else None
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._rest = b""
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.pending: dict[bytes, asyncio.Future[bytes]] = {}
        self._deadlines: deque[tuple[float, bytes, asyncio.Future[bytes]]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.overdue: set[bytes] = set()
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # --- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        configure_socket(transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        if self._rest:
            data = self._rest + data
        end = len(data)
        offset = 0
        hlen = self._header_length
        pending = self.pending
        slot_freed = self._owner.slot_freed
        while end - offset >= 2:
            frame_end = offset + 2 + ((data[offset] << 8) | data[offset + 1])
            if frame_end > end:
                break
            header = data[offset + 2 : offset + 2 + hlen]
            future = pending.pop(header, None)
            if future is None:
                self._unmatched(header)
            else:
                if not future.done():
                    future.set_result(data[offset + 2 + hlen : frame_end])
                slot_freed()
            offset = frame_end
        self._rest = data[offset:] if offset < end else b""

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.fail_all("connection to the HSM broke")
        self._owner.connection_lost(self)
        if not self.closed.done():
            self.closed.set_result(None)

    # --- calls ---------------------------------------------------------------------

    def submit(self, request: bytes, timeout_s: float) -> asyncio.Future[bytes]:
        """Queue ``request`` under a fresh header; the future gets the reply after it."""
        if self._transport is None:
            raise HsmUnavailable("connection to the HSM is down")
        header = self._next_header()
        loop = self._loop
        future: asyncio.Future[bytes] = loop.create_future()
        self.pending[header] = future
        deadline = loop.time() + timeout_s
        self._deadlines.append((deadline, header, future))
        if self._sweeper is None:
            self._sweeper = loop.call_at(deadline + SWEEP_SLACK_S, self._sweep)
        size = len(header) + len(request)
        self._out.append(b"%c%c%b%b" % (size >> 8, size & 0xFF, header, request))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def _next_header(self) -> bytes:
        pending = self.pending
        overdue = self.overdue
        space = self._header_space
        while True:
            self._counter = counter = (self._counter + 1) % space
            headers = self._headers
            header = headers[counter] if headers else b"%0*d" % (self._header_length, counter)
            if header not in pending and header not in overdue:
                return header

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out or self._transport is None:
            return
        self._out = []
        self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _sweep(self) -> None:
        """Fail the calls whose deadline has passed; drop entries already answered."""
        self._sweeper = None
        now = self._loop.time()
        deadlines = self._deadlines
        pending = self.pending
        while deadlines:
            deadline, header, future = deadlines[0]
            if pending.get(header) is not future:
                deadlines.popleft()  # answered (or failed) already
            elif deadline <= now:
                deadlines.popleft()
                self._expire(header, future)
            else:
                break
        if deadlines and self._transport is not None:
            self._sweeper = self._loop.call_at(
                max(deadlines[0][0], now + SWEEP_SLACK_S), self._sweep
            )

    def _expire(self, header: bytes, future: asyncio.Future[bytes]) -> None:
        del self.pending[header]
        self.overdue.add(header)
        self._stats.timeouts += 1
        if not future.done():
            future.set_exception(HsmTimeout("HSM did not answer before the deadline"))
        self._owner.slot_freed()
        if len(self.overdue) > self._owner.max_in_flight:
            # The peer has stopped answering on this connection: recycle it.
            self.abort()

    def _unmatched(self, header: bytes) -> None:
        if header in self.overdue:
            self.overdue.discard(header)
            self._stats.late_replies += 1
        else:
            self._stats.unmatched_replies += 1

    def fail_all(self, reason: str) -> None:
        """Fail every pending call with ``HsmUnavailable(reason)`` (broken or closing)."""
        pending, self.pending = self.pending, {}
        self._out.clear()
        self._deadlines.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for future in pending.values():
            if not future.done():
                self._stats.unavailable += 1
                future.set_exception(HsmUnavailable(reason))
        self.overdue.clear()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
