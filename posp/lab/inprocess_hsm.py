"""LABS ONLY: the in-process HSM transport, the hsm_sim engine called directly.

Selected by ``hsm_url = "inprocess://"`` (``posp.hsm.open_hsm_client`` loads
this module by name).  The engine holds the public TEST LMK set, so every key
the switch uses is then in clear inside the switch process: the switch warns at
start.  Use ``tcp://`` to an HSM (or ``hsm-sim``) for anything else.

The request still goes through the wire codec with a numeric header, exactly
as over TCP, so the in-process client exercises the same bytes as the real
link.  Engine calls are microseconds of pure CPU, so they run inline on the
event loop rather than in a thread.
"""

from __future__ import annotations

from hsm_sim.engine import HsmEngine
from posp.errors import HsmError, HsmUnavailable
from posp.hsm.api import HsmClient


class InProcessTransport:
    """HsmTransport over an in-process :class:`hsm_sim.engine.HsmEngine`."""

    #: The engine and its LMK live in this process.
    holds_keys_in_process = True

    def __init__(self, engine: HsmEngine | None = None, *, header_length: int = 4) -> None:
        self._engine = engine if engine is not None else HsmEngine(header_length=header_length)
        # The engine's own header length wins: a mismatch would garble every reply.
        self._header_length: int = getattr(self._engine, "header_length", header_length)
        self._counter = 0
        self._closed = False
        self.calls = 0

    async def start(self) -> None:
        """Nothing to connect; present so both transports start the same way."""

    async def close(self) -> None:
        self._closed = True

    async def exchange(self, request: bytes) -> bytes:
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


def inprocess_hsm_client(engine: HsmEngine | None = None) -> HsmClient:
    """An HsmClient over the in-process engine (a fresh test-LMK engine by default)."""
    return HsmClient(InProcessTransport(engine))
