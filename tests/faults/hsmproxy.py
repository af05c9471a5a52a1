"""An HSM that "stops" at an exact command: a TCP proxy in front of ``hsm-sim``
that forwards payShield frames until it sees the first terminal answer MAC
(M6 with algorithm 09, the UnionPay ECB MAC under a TAK), then holds that command
and every later one, lets the replies already due come back, and goes down:
every connection is reset and new ones are closed at once, until ``recover``.

This is "hsm-sim stopped between the network answer and the answer MAC" made
deterministic: the switch sends the network answer's MAC check (M8, ZAK) and the
terminal answer's MAC (M6, TAK) together, so only the second fails.

Invariants: 127.0.0.1 only; frames are cut by the 2-byte length, whatever the TCP
segmentation; nothing is forwarded once tripped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Final

from posp.framing import BinaryLengthFramer
from tests.faults.procs import Fault
from tests.hsm.fault_proxy import FaultProxy

HEADER_LENGTH: Final = 4
ANSWER_MAC: Final = b"M600" + b"09"  # command, mode 00, algorithm 09 (CUP ECB, TAK)


class HsmStopProxy(FaultProxy):
    """``await start()``, point the switch at ``port``, ``arm()`` before the purchase.
    Starting, breaking connections and closing are :class:`FaultProxy`'s; the
    forwarding is frame-aware here.  Each outage (``stop_now``, ``hang``, or the
    armed trip) is appended to ``faults`` when given, like a kill: a 0420 whose
    0430 could not be checked while the HSM was away is sent again, a repeat the
    audit counts apart from duplicates."""

    def __init__(self, upstream_port: int, faults: list[Fault] | None = None) -> None:
        super().__init__(upstream_port)
        self._faults = faults
        self.armed = False
        self.tripped = asyncio.Event()  # the answer MAC was seen (and held)
        self.down = asyncio.Event()  # the HSM is "stopped"
        self._outstanding = 0  # forwarded commands whose reply has not come back
        self.hung = False  # commands are held, connections stay open (a hung HSM)
        self.held = asyncio.Event()  # a command was held while hung

    def arm(self) -> None:
        self.armed = True

    def hang(self) -> None:
        """The HSM stops answering but keeps its connections: commands are held."""
        self.hung = True
        self._record("hang")

    def stop_now(self) -> None:
        """The HSM stops at once: connections reset, new ones refused."""
        self._record("stop")
        self.tripped.set()
        self._outstanding = 0
        self._go_down_when_quiet()

    def _record(self, action: str) -> None:
        if self._faults is not None:
            self._faults.append(Fault("hsm", action, dt.datetime.now(dt.UTC)))

    def recover(self) -> None:
        """The HSM is back: connections are accepted and forwarded again."""
        self.armed = self.hung = False
        self.held.clear()
        self.tripped.clear()
        self.down.clear()
        self._outstanding = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down.is_set():
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for coro in (self._commands(reader, up_writer), self._replies(up_reader, writer)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _go_down_when_quiet(self) -> None:
        if self.tripped.is_set() and self._outstanding <= 0 and not self.down.is_set():
            self.down.set()
            self.break_connections()

    async def _commands(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = BinaryLengthFramer(max_frame_bytes=0xFFFF)
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                for body in framer.feed(data):
                    command = body[HEADER_LENGTH:]
                    if self.armed and command.startswith(ANSWER_MAC):
                        if not self.tripped.is_set():
                            self._record("stop at the answer MAC")
                        self.tripped.set()
                    if self.hung:
                        self.held.set()
                        continue  # held: the HSM hangs
                    if self.tripped.is_set():
                        continue  # held: the HSM is stopping
                    self._outstanding += 1
                    writer.write(len(body).to_bytes(2, "big") + body)
                self._go_down_when_quiet()
                await writer.drain()
        writer.transport.abort()

    async def _replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = BinaryLengthFramer(max_frame_bytes=0xFFFF)
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
                self._outstanding -= len(framer.feed(data))
                self._go_down_when_quiet()
        writer.transport.abort()
