"""The terminal-facing TCP server: a thin asyncio Protocol over the framer.

Invariants:
* Every frame becomes one task owned by the server (``_tasks``); requests on
  one connection run concurrently and are answered as they complete.
* Limits never queue: over ``max_connections`` a new connection is accepted
  and closed at once; over the per-connection or global in-flight limit (or
  while shutting down) a request is answered 96 at once.  Each is counted in
  ``posp_shed_total{reason}``.
* Bad input costs only its own connection: an oversized length or bytes that
  are not a terminal message close it; a message whose header decoded but a
  field did not is answered 30 by the pipeline.
* Every request has a deadline (the pipeline's, plus a grace for the journal
  and the answer's MAC); past it the server answers 96 itself.
* An idle connection (no complete frame and nothing in flight for
  ``idle_timeout_s``) is closed by ONE periodic sweep of the server over its
  connections, every tenth of the timeout — at most 10 % late — instead of a
  timer per connection: an idle connection costs only its protocol object and
  uvloop's transport (``tests/bench/bench_connections.py``).
* A vanished client does not stop its requests: they finish, are journaled,
  and their answers are dropped; an approval among them is reversed by the
  switch (``Reply.undelivered``).
* ``stop()`` stops accepting, drains in-flight requests up to the drain
  timeout, then cancels the rest and closes every connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
from typing import Final, cast

from posp.deadline import Deadlines
from posp.errors import FramingError
from posp.framing import BinaryLengthFramer, frame_binary
from posp.log import bind_connection, get_logger
from posp.metrics import SwitchMetrics
from posp.pipeline.engine import ANSWER_GRACE_S, Pipeline, Reply
from posp.settings import LimitSettings

#: A TLS handshake slower than this (a stalled or hostile client) is dropped.
HANDSHAKE_TIMEOUT_S: Final = 10.0
#: The idle sweep runs this many times per ``idle_timeout_s``: an idle
#: connection is closed at most a tenth of the timeout late.
IDLE_SWEEPS_PER_TIMEOUT: Final = 10

_log = get_logger("posp.server")


class TerminalConnection(asyncio.Protocol):
    """One terminal's TCP connection (slotted: thousands are held idle)."""

    __slots__ = (
        "_framer",
        "_in_flight",
        "_loop",
        "_peer",
        "_server",
        "_transport",
        "last_activity_s",
        "open",
    )

    def __init__(self, server: TerminalServer) -> None:
        self._server = server
        self._framer = BinaryLengthFramer(server.limits.max_frame_bytes)
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        self._in_flight = 0
        self._loop = asyncio.get_running_loop()
        self.last_activity_s = self._loop.time()
        self.open = False

    # --- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        server = self._server
        if len(server.connections) >= server.limits.max_connections or server.closing:
            server.metrics.shed.labels("connections").inc()
            transport.close()
            return
        self.open = True
        server.connections.add(self)
        server.metrics.connections.inc()
        peer = transport.get_extra_info("peername")
        if peer:
            self._peer = f"{peer[0]}:{peer[1]}"

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            self.open = False
            self._server.connections.discard(self)
            self._server.metrics.connections.dec()

    def data_received(self, data: bytes) -> None:
        if not self.open:
            return
        try:
            bodies = self._framer.feed(data)
        except FramingError as exc:
            self._server.metrics.frames_rejected.labels("oversized").inc()
            _log.warning("framing error; closing connection", reason=str(exc), peer=self._peer)
            self.close()
            return
        if bodies:  # only a complete frame is activity: a byte trickle holds no slot
            self.last_activity_s = self._loop.time()
        for body in bodies:
            if body:
                self._accept(body)

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its requests too.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and self.open:
            self._transport.resume_reading()

    # --- requests --------------------------------------------------------------

    def _accept(self, body: bytes) -> None:
        server = self._server
        reason = None
        if server.closing:
            reason = "shutdown"
        elif self._in_flight >= server.limits.max_in_flight_per_connection:
            reason = "in_flight_connection"
        elif server.in_flight >= server.limits.max_in_flight:
            reason = "in_flight_global"
        if reason is not None:
            server.metrics.shed.labels(reason).inc()
            self._send(server.pipeline.shed(body))
            return
        self._in_flight += 1
        server.in_flight += 1
        # Each request's log lines carry the peer: bound in the request's own
        # context (a context per connection would cost every idle one ~200 bytes).
        context = contextvars.copy_context()
        context.run(bind_connection, self._peer)
        task = self._loop.create_task(self._serve(body), context=context)
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    async def _serve(self, body: bytes) -> None:
        server = self._server
        try:
            deadline_s = server.limits.request_deadline_s + ANSWER_GRACE_S
            try:
                with server.deadlines.after(deadline_s):
                    reply = await server.pipeline.handle(body)
            except TimeoutError:
                server.metrics.shed.labels("deadline").inc()
                reply = server.pipeline.shed(body)
            except Exception:  # the pipeline never raises; this is the last net
                _log.exception("pipeline raised; answering 96")
                reply = server.pipeline.shed(body)
            self._send(reply)
        finally:
            self._in_flight -= 1
            server.in_flight -= 1
            self.last_activity_s = self._loop.time()

    def _send(self, reply: Reply) -> None:
        transport = self._transport
        if transport is None or not self.open or transport.is_closing():
            if reply.undelivered is not None:
                reply.undelivered()  # an approval nobody will see: the switch reverses it
            return
        if reply.body is not None:
            transport.write(frame_binary(reply.body))
        if reply.close:
            self.close()

    # --- idle ------------------------------------------------------------------

    def close_if_idle(self, now_s: float, timeout_s: float) -> None:
        """Close the connection if nothing came and nothing was in flight for
        ``timeout_s`` (called by the server's idle sweep)."""
        if self.open and self._in_flight == 0 and now_s - self.last_activity_s >= timeout_s:
            self._server.metrics.frames_rejected.labels("idle").inc()
            self.close()

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self.connection_lost(None)


class TerminalServer:
    """Listens for terminals and feeds their frames to the pipeline."""

    def __init__(self, pipeline: Pipeline, limits: LimitSettings, metrics: SwitchMetrics) -> None:
        self.pipeline = pipeline
        self.limits = limits
        self.metrics = metrics
        #: Each request's deadline (the pipeline's plus the answer grace) shares
        #: the pipeline's deadlines and their one loop timer.
        self.deadlines: Deadlines = pipeline.deadlines
        self.connections: set[TerminalConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        metrics.track_in_flight(lambda: self.in_flight)  # read at scrape time
        self.closing = False
        self._server: asyncio.Server | None = None
        self._idle_sweep: asyncio.TimerHandle | None = None

    async def start(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Listen on ``host:port``; with ``reuse_port`` (SO_REUSEPORT, Linux) other
        processes may listen on the same port and the kernel spreads connections;
        with ``ssl_context`` terminals speak TLS (``posp.tls``)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: TerminalConnection(self),
            host,
            port,
            backlog=4096,
            reuse_address=True,
            reuse_port=reuse_port or None,
            ssl=ssl_context,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if ssl_context is not None else None,
        )
        self._schedule_idle_sweep()
        _log.info(
            "terminal listener started", host=host, port=self.port, tls=ssl_context is not None
        )

    def _schedule_idle_sweep(self) -> None:
        period_s = self.limits.idle_timeout_s / IDLE_SWEEPS_PER_TIMEOUT
        self._idle_sweep = asyncio.get_running_loop().call_later(period_s, self._sweep_idle)

    def _sweep_idle(self) -> None:
        """Close every connection idle for ``idle_timeout_s``; runs every tenth of it."""
        now_s = asyncio.get_running_loop().time()
        timeout_s = self.limits.idle_timeout_s
        try:
            for connection in [
                c for c in self.connections if now_s - c.last_activity_s >= timeout_s
            ]:
                try:
                    connection.close_if_idle(now_s, timeout_s)
                except Exception:  # one broken transport must not stop the sweep
                    _log.exception("closing an idle connection failed")
        finally:
            if not self.closing:
                self._schedule_idle_sweep()

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return 0
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, drain_s: float) -> None:
        """Stop accepting, drain in-flight requests up to ``drain_s``, cancel the rest."""
        self.closing = True
        if self._idle_sweep is not None:
            self._idle_sweep.cancel()
            self._idle_sweep = None
        if self._server is not None:
            self._server.close()
        pending = set(self.tasks)
        if pending:
            _log.info("draining requests", in_flight=len(pending), drain_s=drain_s)
            _done, pending = await asyncio.wait(pending, timeout=drain_s or None)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
            _log.warning("requests cancelled at shutdown", cancelled=len(pending))
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
