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

from posp.errors import FramingError
from posp.framing import BinaryLengthFramer, frame_binary
from posp.log import bind_connection, get_logger
from posp.metrics import SwitchMetrics
from posp.pipeline.engine import ANSWER_GRACE_S, Pipeline, Reply
from posp.settings import LimitSettings

#: A TLS handshake slower than this (a stalled or hostile client) is dropped.
HANDSHAKE_TIMEOUT_S: Final = 10.0

_log = get_logger("posp.server")


class TerminalConnection(asyncio.Protocol):
    """One terminal's TCP connection."""

    def __init__(self, server: TerminalServer) -> None:
        self._server = server
        self._framer = BinaryLengthFramer(server.limits.max_frame_bytes)
        self._transport: asyncio.Transport | None = None
        self._context = contextvars.copy_context()
        self._in_flight = 0
        self._idle_handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._last_activity_s = self._loop.time()
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
        self._context.run(bind_connection, f"{peer[0]}:{peer[1]}" if peer else "?")
        self._schedule_idle_check(server.limits.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            self.open = False
            self._server.connections.discard(self)
            self._server.metrics.connections.dec()
        if self._idle_handle is not None:
            self._idle_handle.cancel()

    def data_received(self, data: bytes) -> None:
        if not self.open:
            return
        try:
            bodies = self._framer.feed(data)
        except FramingError as exc:
            self._server.metrics.frames_rejected.labels("oversized").inc()
            self._context.run(_log.warning, "framing error; closing connection", reason=str(exc))
            self.close()
            return
        if bodies:  # only a complete frame is activity: a byte trickle holds no slot
            self._last_activity_s = self._loop.time()
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
        task = self._loop.create_task(self._serve(body), context=self._context.copy())
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    async def _serve(self, body: bytes) -> None:
        server = self._server
        try:
            deadline_s = server.limits.request_deadline_s + ANSWER_GRACE_S
            try:
                async with asyncio.timeout(deadline_s):
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
            self._last_activity_s = self._loop.time()

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

    def _schedule_idle_check(self, delay_s: float) -> None:
        self._idle_handle = self._loop.call_later(delay_s, self._check_idle)

    def _check_idle(self) -> None:
        if not self.open:
            return
        timeout_s = self._server.limits.idle_timeout_s
        idle_s = self._loop.time() - self._last_activity_s
        if idle_s >= timeout_s and self._in_flight == 0:
            self._server.metrics.frames_rejected.labels("idle").inc()
            self.close()
            return
        self._schedule_idle_check(max(timeout_s - idle_s, 0.05))

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
        self.connections: set[TerminalConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        metrics.track_in_flight(lambda: self.in_flight)  # read at scrape time
        self.closing = False
        self._server: asyncio.Server | None = None

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
        _log.info(
            "terminal listener started", host=host, port=self.port, tls=ssl_context is not None
        )

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return 0
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, drain_s: float) -> None:
        """Stop accepting, drain in-flight requests up to ``drain_s``, cancel the rest."""
        self.closing = True
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
