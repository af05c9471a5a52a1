"""The HSM simulator's TCP server: a thin asyncio Protocol over the pure engine.

Invariants:
* Frames are 2-byte big-endian length + body; every complete frame in a
  ``data_received`` chunk is executed at once (pipelining) and the replies of
  one chunk leave in one ``transport.write``, in request order.
* An empty frame, or one too short for header + command, gets no reply.  A
  frame longer than ``max_frame_bytes`` closes that connection only.  Nothing a
  client sends can stop the server serving the others.
* With ``latency_ms`` or ``max_cps`` set, replies are held until their release
  time (a GCRA token bucket for the cap, burst of 1/10 s of calls).  Each
  connection holds at most ``max_backlog`` delayed replies; beyond that the
  server stops reading from it until it drains, so overload reaches the client
  as TCP backpressure and then its own deadlines, as with a real HSM at its
  licensed rate.
* Logs carry command codes, peers and sizes, never message contents.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, cast

import structlog
from prometheus_client import CollectorRegistry

from hsm_sim.metrics import HsmSimMetrics
from hsm_sim.settings import HsmSimSettings
from posp.hsm.connection import configure_socket
from posp.tls import ListenerTls, server_context

log = structlog.get_logger("hsm_sim.server")


class CpsLimiter:
    """Generic cell-rate algorithm: the release time of each call under a rate cap."""

    def __init__(self, rate_per_s: float, burst: int | None = None) -> None:
        self._interval_s = 1.0 / rate_per_s
        burst = burst if burst is not None else max(1, int(rate_per_s / 10))
        self._tolerance_s = (burst - 1) * self._interval_s
        self._theoretical_s = 0.0

    def release_at(self, now: float) -> float:
        """Reserve one call; return when it may be answered (``now`` or later)."""
        theoretical = max(self._theoretical_s, now)
        self._theoretical_s = theoretical + self._interval_s
        return max(now, theoretical - self._tolerance_s)


class HsmServer:
    """A running simulator: ``port``, ``connections`` and ``await close()``."""

    def __init__(self, settings: HsmSimSettings, engine: Any, metrics: HsmSimMetrics) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.header_length = settings.header_length
        self.max_frame_bytes = settings.max_frame_bytes
        self.latency_s = settings.latency_ms / 1000.0
        self.limiter = CpsLimiter(settings.max_cps) if settings.max_cps > 0 else None
        self.shaping = self.latency_s > 0 or self.limiter is not None
        self.protocols: set[HsmServerProtocol] = set()
        self._server: asyncio.Server | None = None
        self.port = 0
        self.host = settings.host

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        tls = ListenerTls(
            cert_file=settings.tls_cert_file,
            key_file=settings.tls_key_file,
            client_ca_file=settings.tls_client_ca_file,
        )
        self._server = await loop.create_server(
            lambda: HsmServerProtocol(self),
            settings.host,
            settings.port,
            backlog=1024,
            ssl=server_context(tls, "hsm-sim tls"),
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def connections(self) -> int:
        return len(self.protocols)

    def release_at(self, now: float) -> float:
        """When a reply computed at ``now`` may leave (latency and cps cap)."""
        release = now + self.latency_s
        if self.limiter is not None:
            release = max(release, self.limiter.release_at(now))
        return release

    def execute(self, frame: bytes) -> bytes:
        """Run one request through the engine; never raises."""
        hlen = self.header_length
        command = frame[hlen : hlen + 2]
        started = time.perf_counter()
        try:
            reply: bytes = self.engine.handle(frame)
        except Exception:  # the engine must never raise; if it does, answer 41 and go on
            log.exception("engine_failure", command=command.decode("ascii", "replace"))
            reply = frame[:hlen] + command[:1] + bytes(((command[1] + 1) & 0xFF,)) + b"41"
        self.metrics.observe(command, reply[hlen + 2 : hlen + 4], time.perf_counter() - started)
        return reply

    async def close(self) -> None:
        """Stop accepting, flush held replies, close every connection."""
        if self._server is not None:
            self._server.close()
        for protocol in list(self.protocols):
            protocol.shutdown()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


class HsmServerProtocol(asyncio.Protocol):
    """One host connection."""

    def __init__(self, server: HsmServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._rest = b""
        self._held: deque[tuple[float, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        configure_socket(transport.get_extra_info("socket"))
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._server.protocols.add(self)
        self._server.metrics.connections.inc()
        log.debug("connection_opened", peer=self._peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
        self._held.clear()
        if self in self._server.protocols:
            self._server.protocols.discard(self)
            self._server.metrics.connections.dec()
        log.debug("connection_closed", peer=self._peer, error=type(exc).__name__ if exc else None)

    def data_received(self, data: bytes) -> None:
        if self._rest:
            data = self._rest + data
        elif (
            len(data) > 2
            and not self._server.shaping
            and (data[0] << 8 | data[1]) + 2 == len(data) <= self._server.max_frame_bytes + 2
        ):
            # Exactly one frame, no shaping: the usual read at low concurrency.
            reply = self._server.execute(data[2:])
            if reply and self._transport is not None:
                n = len(reply)
                self._transport.write(b"%c%c%b" % (n >> 8, n & 0xFF, reply))
            return
        server = self._server
        end = len(data)
        offset = 0
        replies: list[bytes] = []
        while end - offset >= 2:
            size = (data[offset] << 8) | data[offset + 1]
            if size > server.max_frame_bytes:
                log.warning("frame_too_large", peer=self._peer, size_bytes=size)
                self._send(replies)
                self._close_now()
                return
            frame_end = offset + 2 + size
            if frame_end > end:
                break
            if size:
                reply = server.execute(data[offset + 2 : frame_end])
                if reply:
                    n = len(reply)
                    replies.append(b"%c%c%b" % (n >> 8, n & 0xFF, reply))
            offset = frame_end
        self._rest = data[offset:] if offset < end else b""
        if replies:
            self._send(replies)

    def _send(self, replies: list[bytes]) -> None:
        if not replies or self._transport is None:
            return
        if not self._server.shaping:
            self._transport.write(b"".join(replies))
            return
        now = self._loop.time()
        for reply in replies:
            self._held.append((self._server.release_at(now), reply))
        if len(self._held) >= self._server.settings.max_backlog and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._arm()

    def _arm(self) -> None:
        if self._timer is None and self._held:
            self._timer = self._loop.call_at(self._held[0][0], self._release)

    def _release(self) -> None:
        """Write every held reply whose time has come (one write), re-arm for the rest."""
        self._timer = None
        if self._transport is None:
            return
        due = self._loop.time() + 0.0005  # timer granularity: release what is due within 0.5 ms
        held = self._held
        out: list[bytes] = []
        while held and held[0][0] <= due:
            out.append(held.popleft()[1])
        if out:
            self._transport.write(b"".join(out))
        if self._paused and len(held) < self._server.settings.max_backlog // 2:
            self._paused = False
            self._transport.resume_reading()
        self._arm()

    def _close_now(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def shutdown(self) -> None:
        """Graceful close: write held replies at once, then close."""
        if self._transport is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held:
            self._transport.write(b"".join(reply for _, reply in self._held))
            self._held.clear()
        self._transport.close()


async def start_hsm_server(
    settings: HsmSimSettings | None = None,
    engine: Any = None,
    *,
    registry: CollectorRegistry | None = None,
    **params: Any,
) -> HsmServer:
    """Start a simulator in this event loop and return it once it listens.

    ``settings`` defaults to ``HsmSimSettings(**params)``; pass ``port=0`` for an
    ephemeral port and read ``server.port``.  ``engine`` defaults to an
    ``HsmEngine`` over the LMK file or the public test LMK set.
    """
    if settings is None:
        settings = HsmSimSettings(**params)
    elif params:
        settings = settings.model_copy(update=params)
    if engine is None:
        engine = build_engine(settings)
    metrics = HsmSimMetrics(registry if registry is not None else CollectorRegistry())
    server = HsmServer(settings, engine, metrics)
    await server.listen()
    log.info(
        "hsm_listening",
        host=settings.host,
        port=server.port,
        header_length=settings.header_length,
        latency_ms=settings.latency_ms,
        max_cps=settings.max_cps,
    )
    return server


def build_engine(settings: HsmSimSettings) -> Any:
    """The command engine over the configured LMK set (loud warning for the test set)."""
    from hsm_sim.engine import HsmEngine
    from hsm_sim.lmk import LmkSet

    if settings.lmk_file is None:
        log.warning(
            "test_lmk_in_use",
            detail="using the PUBLIC Thales TEST LMK set; never load real keys into this HSM",
        )
        lmk = LmkSet.test_set()
    else:
        lmk = LmkSet.load(settings.lmk_file)
    return HsmEngine(lmk, header_length=settings.header_length)
