"""In-process HSM client: the hsm_sim command engine called directly, no sockets.

The request still goes through the wire codec with a numeric header, exactly
as over TCP, so the in-process client exercises the same bytes as the real
link.  Engine calls are microseconds of pure CPU, so they run inline on the
event loop rather than in a thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from posp.errors import HsmError, HsmUnavailable
from posp.hsm.operations import HsmOperations

if TYPE_CHECKING:
    from hsm_sim.engine import HsmEngine


class InProcessHsmClient(HsmOperations):
    """HsmClient over an in-process :class:`hsm_sim.engine.HsmEngine`."""

    def __init__(self, engine: HsmEngine | None = None, *, header_length: int = 4) -> None:
        if engine is None:
            from hsm_sim.engine import HsmEngine

            engine = HsmEngine(header_length=header_length)
        self._engine = engine
        # The engine's own header length wins: a mismatch would garble every reply.
        self._header_length: int = getattr(engine, "header_length", header_length)
        self._counter = 0
        self._closed = False
        self.calls = 0

    async def start(self) -> None:
        """Nothing to connect; present so both clients start the same way."""

    async def close(self) -> None:
        self._closed = True

    async def _exchange(self, request: bytes) -> bytes:
        if self._closed:
            raise HsmUnavailable("in-process HSM client is closed")
        length = self._header_length
        self._counter = (self._counter + 1) % (10**length) if length else 0
        header = b"%0*d" % (length, self._counter) if length else b""
        self.calls += 1
        reply: bytes = self._engine.handle(header + request)
        if reply[:length] != header:
            raise HsmError("HSM engine answered with a different message header")
        return reply[length:]
