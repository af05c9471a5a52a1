"""Runs a ``TerminalMachine`` over TCP: the only place a terminal does I/O.

Invariants:

* One request at a time per session; every await has a deadline (connect
  and response timeouts).
* A request whose answer does not come in time gives the machine its
  timeout event (so a reversible request's reversal becomes due) and closes
  the connection, so a late answer can never be taken for the next one.
* ``transact`` signs in when needed and sends a due reversal before the
  transaction, as terminal-link §3.2 requires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from terminals.machine import TerminalMachine
from terminals.outcome import Event, Outcome

LEN_BYTES = 2

OutcomeHook = Callable[[Outcome, float], None]


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Where and how a terminal talks to the switch."""

    host: str = "127.0.0.1"
    port: int = 5800
    connect_timeout_s: float = 5.0
    response_timeout_s: float = 30.0
    long_connection: bool = False
    sign_in_variant: str = "003"


class TerminalSession:
    """A machine plus its connection.  ``on_outcome(outcome, latency_s)`` is
    called for every exchange (sign-ins and reversals included)."""

    def __init__(
        self,
        machine: TerminalMachine,
        options: SessionOptions | None = None,
        *,
        on_outcome: OutcomeHook | None = None,
    ) -> None:
        self.machine = machine
        self.options = options or SessionOptions()
        self.on_outcome = on_outcome
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.connects = 0  # connections opened: more than one on a long connection = a drop

    @property
    def connected(self) -> bool:
        return self._writer is not None

    @property
    def peer_closed(self) -> bool:
        """The open connection has seen the switch's end-of-file (an idle drop);
        asyncio feeds EOF to the reader even when no read is pending."""
        return self._reader is not None and self._reader.at_eof()

    async def connect(self) -> None:
        """Open the connection (done on demand by ``exchange``)."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.options.host, self.options.port),
                self.options.connect_timeout_s,
            )
            self.connects += 1

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _read_frame(self) -> bytes:
        assert self._reader is not None
        prefix = await self._reader.readexactly(LEN_BYTES)
        return await self._reader.readexactly(int.from_bytes(prefix, "big"))

    async def exchange(self, frame: bytes) -> Outcome:
        """Send one built request and settle it with the answer or the failure."""
        started = time.perf_counter()
        outcome = await self._exchange(frame)
        if self.on_outcome is not None:
            self.on_outcome(outcome, time.perf_counter() - started)
        return outcome

    async def _exchange(self, frame: bytes) -> Outcome:
        try:
            await self.connect()
            assert self._writer is not None
            self._writer.write(frame)
        except (OSError, TimeoutError):
            await self.close()
            return self.machine.on_comms_error(after_send=False)
        try:
            # A timeout scope, not wait_for: no task wrapped around every read.
            async with asyncio.timeout(self.options.response_timeout_s):
                body = await self._read_frame()
        except TimeoutError:
            await self.close()
            return self.machine.on_timeout()
        except (OSError, asyncio.IncompleteReadError):
            await self.close()
            return self.machine.on_comms_error(after_send=True)
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
