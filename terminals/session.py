"""Runs a ``TerminalMachine`` over TCP: the only place a terminal does I/O.

Invariants:

* One request at a time per session; every await has a deadline (connect
  and response timeouts).
* A request whose answer does not come in time gives the machine its
  timeout event (so a reversible request's reversal becomes due) and closes
  the connection, so a late answer can never be taken for the next one.
* ``transact`` signs in when needed and sends a due reversal before the
  transaction, as terminal-link §3.2 requires, then runs the management
  dialogues the last answer's header digit 6 asks for (§10: ``1`` / ``4`` /
  ``5``; ``6`` with a ``SoftwareLink``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from posp.framing import BinaryLengthFramer
from terminals.chipflow import script_advice
from terminals.machine import TerminalMachine
from terminals.management import SoftwareLink, run_management
from terminals.outcome import Event, Outcome

LEN_BYTES = 2
MAX_FRAME_BYTES = 0xFFFF  # what a 2-byte length can say
#: How long ``close`` waits for the transport to report the connection gone.
CLOSE_WAIT_S = 1.0

OutcomeHook = Callable[[Outcome, float], None]
#: Header digits 6 that send the terminal into a management dialogue first (§10).
MANAGEMENT_DIGITS = frozenset("1456")


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Where and how a terminal talks to the switch."""

    host: str = "127.0.0.1"
    port: int = 5800
    connect_timeout_s: float = 5.0
    response_timeout_s: float = 30.0
    long_connection: bool = False
    sign_in_variant: str = "003"


class _FrameProtocol(asyncio.Protocol):
    """One terminal connection: buffers bytes, cuts LEN-prefixed frames and
    hands each to the one pending ``read`` (no streams: a future per answer).

    Bytes arriving with no read pending stay buffered for the next read, as a
    stream reader would keep them; the framing is ``posp.framing``'s (a frame
    arriving whole in one segment, the usual case, skips it).  End-of-file and
    a lost connection fail the pending read (``EOFError`` / ``OSError``); so
    does every later read that the buffered bytes cannot satisfy."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.framer = BinaryLengthFramer(max_frame_bytes=MAX_FRAME_BYTES)
        self.frames: deque[bytes] = deque()  # complete bodies no read has taken yet
        self.waiter: asyncio.Future[bytes] | None = None
        self.eof = False
        self.error: Exception | None = None  # set once the connection is lost
        self.lost = loop.create_future()  # resolved by connection_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is not None and waiter.done():
            waiter = self.waiter = None  # its read was cancelled: keep the bytes
        if waiter is not None and not self.framer.buffered and not self.frames:
            # The usual case: exactly one whole answer in one segment.
            size = len(data) - LEN_BYTES
            if size >= 0 and int.from_bytes(data[:LEN_BYTES], "big") == size:
                self.waiter = None
                waiter.set_result(data[LEN_BYTES:])
                return
        self.frames.extend(self.framer.feed(data))  # no 2-byte length exceeds the maximum
        if waiter is not None and self.frames:
            self.waiter = None
            waiter.set_result(self.frames.popleft())

    def eof_received(self) -> bool | None:
        self.eof = True
        self._fail(asyncio.IncompleteReadError(b"", None))
        return True  # stay half-open, as a stream does: close() closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.eof or exc is None
        self.error = exc or ConnectionResetError("connection lost")
        self._fail(self.error)
        if not self.lost.done():
            self.lost.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    @property
    def unread(self) -> bool:
        """Bytes arrived that no read has taken yet (whole frames or a partial one)."""
        return bool(self.frames) or self.framer.buffered > 0

    @property
    def gone(self) -> bool:
        """The switch closed or broke this connection and nothing unread is left."""
        return (self.eof or self.error is not None) and not self.unread

    def read(self) -> asyncio.Future[bytes]:
        """A future for the next frame's body (already done when it is buffered)."""
        waiter = self.loop.create_future()
        if self.frames:
            waiter.set_result(self.frames.popleft())
        elif self.error is not None:
            waiter.set_exception(self.error)
        elif self.eof:
            waiter.set_exception(asyncio.IncompleteReadError(b"", None))
        else:
            self.waiter = waiter
        return waiter

    def time_out(self, waiter: asyncio.Future[bytes]) -> None:
        if self.waiter is waiter:
            self.waiter = None
        if not waiter.done():
            waiter.set_exception(TimeoutError())


class TerminalSession:
    """A machine plus its connection.  ``on_outcome(outcome, latency_s)`` is
    called for every exchange (sign-ins and reversals included)."""

    def __init__(
        self,
        machine: TerminalMachine,
        options: SessionOptions | None = None,
        *,
        on_outcome: OutcomeHook | None = None,
        software: SoftwareLink | None = None,
    ) -> None:
        self.machine = machine
        self.software = software  # digit 6: updater + offer lookup (None: ignores it)
        self.options = options or SessionOptions()
        self.on_outcome = on_outcome
        self._protocol: _FrameProtocol | None = None
        self.connects = 0  # connections opened: more than one on a long connection = a drop

    @property
    def connected(self) -> bool:
        return self._protocol is not None

    @property
    def peer_closed(self) -> bool:
        """The open connection has seen the switch's end-of-file (an idle drop),
        with no unread bytes left; the protocol sees EOF even when no read is pending."""
        protocol = self._protocol
        return protocol is not None and protocol.eof and not protocol.unread

    async def connect(self) -> None:
        """Open the connection (done on demand by ``exchange``)."""
        if self._protocol is None:
            loop = asyncio.get_running_loop()
            protocol = _FrameProtocol(loop)
            async with asyncio.timeout(self.options.connect_timeout_s):
                await loop.create_connection(lambda: protocol, self.options.host, self.options.port)
            self._protocol = protocol
            self.connects += 1

    async def close(self) -> None:
        """Close the connection; waits at most ``CLOSE_WAIT_S`` for it to be
        gone, then aborts it (never hangs on a peer or a loop that stalls)."""
        protocol, self._protocol = self._protocol, None
        if protocol is None or protocol.transport is None:
            return
        protocol.transport.close()
        if not protocol.lost.done():
            await asyncio.wait((protocol.lost,), timeout=CLOSE_WAIT_S)
            if not protocol.lost.done():
                protocol.transport.abort()

    def _abort(self) -> None:
        """Drop the connection at once (no waiting: used while being cancelled)."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()

    async def exchange(self, frame: bytes, *, reconnect: bool = True) -> Outcome:
        """Send one built request and settle it with the answer or the failure.

        A long connection the switch closed while it was idle is replaced by a
        fresh one first, as a terminal would (``reconnect=False`` sends on it
        anyway: the fleet's hold probe counts such drops instead)."""
        started = time.perf_counter()
        if reconnect and self._protocol is not None and self._protocol.gone:
            await self.close()
        outcome = await self._exchange(frame)
        if self.on_outcome is not None:
            self.on_outcome(outcome, time.perf_counter() - started)
        return outcome

    async def _exchange(self, frame: bytes) -> Outcome:
        try:
            if self._protocol is None:
                await self.connect()
            protocol = self._protocol
            assert protocol is not None and protocol.transport is not None
            if protocol.error is None:  # a lost connection fails the read below
                protocol.transport.write(frame)
        except (OSError, TimeoutError):
            await self.close()
            return self.machine.on_comms_error(after_send=False)
        # One timer handle per read, not a timeout scope (no context manager,
        # no task cancellation to undo).
        answer = protocol.read()
        timer = protocol.loop.call_later(self.options.response_timeout_s, protocol.time_out, answer)
        try:
            body = await answer
        except asyncio.CancelledError:
            self._abort()  # a late answer must never be taken for the next request
            raise
        except TimeoutError:
            await self.close()
            return self.machine.on_timeout()
        except (OSError, EOFError):
            await self.close()
            return self.machine.on_comms_error(after_send=True)
        finally:
            timer.cancel()
        outcome = self.machine.accept(body)
        if not self.options.long_connection or outcome.event is not Event.RESPONSE:
            await self.close()
        return outcome

    async def prepare(self) -> Outcome | None:
        """Sign in when needed, then send a due reversal.  Returns the outcome
        that blocks the next transaction (failed sign-in, unanswered reversal),
        else None."""
        machine = self.machine
        if not machine.state.signed_in:
            outcome = await self.exchange(machine.sign_in(self.options.sign_in_variant))
            if not outcome.approved:
                return outcome
        if machine.reversal_due:
            outcome = await self.exchange(machine.reversal())
            if machine.reversal_due:
                return outcome
            if outcome.needs_sign_in:
                return await self.prepare()
        if machine.state.tms.processing in MANAGEMENT_DIGITS:
            await run_management(self, self.software)  # parameters, CAPK/AID, software
        while machine.in_flight is None and (advice := script_advice(machine)) is not None:
            outcome = await self.exchange(advice)  # the card's script results (0620)
            if not outcome.approved:
                return outcome
        return None

    async def transact(self, build: Callable[[TerminalMachine], bytes]) -> Outcome:
        """Prepare, then build the transaction with ``build(machine)`` and send it."""
        blocking = await self.prepare()
        if blocking is not None:
            return blocking
        return await self.exchange(build(self.machine))

    async def settle(self) -> Outcome:
        """Settlement then the whole batch upload (resuming one under way).
        Returns the settlement's outcome, or the first failing upload outcome."""
        blocking = await self.prepare()
        if blocking is not None:
            return blocking
        machine = self.machine
        result: Outcome | None = None
        if not machine.upload_due:
            result = await self.exchange(machine.settlement())
            if not result.approved:
                return result
        while (frame := machine.batch_upload()) is not None:
            outcome = await self.exchange(frame)
            if not outcome.approved:
                return outcome
            result = result or outcome
        if result is None:
            raise RuntimeError("settlement produced no exchange")
        return result
