"""The pipeline: one frame body in, one answer out.

``Pipeline.handle(body)`` decodes, finds the route, runs its steps under the
request's deadline, builds the answer and records the outcome in the journal
(the answer leaves only after that write).  An approval that cannot be
delivered — its answer's MAC failed, the steps ended otherwise after it, the
request was cancelled, or the server finds the connection gone — is reversed
by the switch itself (``posp.pipeline.delivery``).
It never raises: every failure becomes a response code through
``posp.pipeline.codes`` or, for bytes that are not a terminal message at all,
an instruction to close the connection.

Deadline: steps run inside ``request_deadline_s`` from frame arrival (a
``posp.deadline`` deadline: ``asyncio.timeout``'s behaviour without a loop
timer per request, at most a tick late); when it passes the answer is
``ctx.timeout_code`` (96, or 98 once a financial step has forwarded the
request).  Journal and answer MAC run after the deadline with the HSM's and
store's own deadlines, so the server adds a small grace on top.  So does
``finish_forwarded``: a reservation in the original (a refund's, a void's) is
released unless the request keeps it
(``originals.keeps_reservation``), and a request the deadline cut off after
sending is timed out with a queued 0420, whatever ended the steps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from posp.backoff import Backoff
from posp.deadline import Deadlines
from posp.errors import DecodeError
from posp.iso8583 import TerminalDecodeError, TerminalFrame, decode_terminal
from posp.iso8583.fields import Field60
from posp.log import bind_transaction, get_logger
from posp.pipeline.codes import APPROVED, FORMAT_ERROR, MALFUNCTION, ResponseCode, code_for
from posp.pipeline.context import Services, TxnContext
from posp.pipeline.delivery import approval_at_stake, undo_approval
from posp.pipeline.forward import finish_forwarded
from posp.pipeline.journal import record_outcome
from posp.pipeline.respond import bare_answer, build_answer, take_answer
from posp.pipeline.risk import finish_risk
from posp.pipeline.routes import find_route
from posp.txn import TxnType

UNSUPPORTED = ResponseCode.INVALID_TRANSACTION
#: Time on top of the request deadline for journal writes and the answer's MAC:
#: the server's own deadline is the request's plus this.
ANSWER_GRACE_S: Final = 2.0
#: How long a background reversal of an undelivered approval keeps retrying.
UNDO_RETRY_MAX_S = 60.0
UNROUTED = "unrouted"  # metrics label for requests no route matched

_log = get_logger("posp.pipeline")


@dataclass(frozen=True, slots=True)
class Reply:
    """What the connection does next: send ``body`` (if any), then close if asked."""

    body: bytes | None
    close: bool = False
    #: Called by the server when it cannot write ``body`` (the connection is
    #: gone): set for approvals, which the switch then reverses itself.
    undelivered: Callable[[], None] | None = None


class Pipeline:
    """Routes requests through their steps.  Shared by every connection."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._background: set[asyncio.Future[None]] = set()
        #: Every request's deadlines, the server's included (``posp.deadline``).
        self.deadlines = Deadlines()

    def shed(self, body: bytes, code: str = MALFUNCTION) -> Reply:
        """Answer at once without the HSM or store (over a load limit)."""
        try:
            frame = decode_terminal(body)
        except TerminalDecodeError as exc:
            if exc.partial is None:
                return Reply(None, close=True)
            frame = exc.partial
        return Reply(bare_answer(frame, code))

    async def handle(self, body: bytes) -> Reply:
        started_s = time.perf_counter()
        try:
            frame = decode_terminal(body)
        except TerminalDecodeError as exc:
            return self._malformed(exc, started_s)
        try:
            f60 = Field60.parse(_text(frame, 60) or "")
        except DecodeError:
            self._bind(frame, None)
            return self._answer_bare(frame, FORMAT_ERROR, UNROUTED, started_s)
        route = find_route(frame.message, f60)
        self._bind(frame, route.name if route is not None else None)  # one bind per request
        if route is None:
            return self._answer_bare(frame, UNSUPPORTED, UNROUTED, started_s)
        ctx = TxnContext(
            body, frame, route, self.services, f60, self.services.local_now(), started_s
        )
        undone = True
        try:
            code = await self._run_steps(ctx)
            await self._finish_steps(ctx)
            if code != APPROVED and approval_at_stake(ctx):
                # Approved upstream, but the steps ended otherwise (deadline, fault).
                undone = await self._undo(ctx, "request ended without the approval")
            answer = await take_answer(ctx, code)
            if ctx.answer_unsigned and code == APPROVED and approval_at_stake(ctx):
                undone = await self._undo(ctx, "answer MAC failed")
                code = MALFUNCTION
                answer = await build_answer(ctx, code, mac=False)
            await record_outcome(ctx, code)
            await self._finish_risk(ctx, code)
        except asyncio.CancelledError:  # the server's deadline or shutdown
            if approval_at_stake(ctx):
                self._spawn_undo(ctx, "request cancelled")
            raise
        self._observe(route.name, code, started_s)
        _log.info("answered", response_code=code)
        if not undone:
            # An approval the terminal will not get and the switch could not reverse
            # (store trouble): no answer at all, so the terminal reverses it (0400).
            return Reply(None)
        if ctx.route.txn_type is TxnType.REVERSAL and code == MALFUNCTION:
            # A 0400 the switch could not journal or apply (store down, deadline): no
            # answer, so the terminal keeps its pending reversal and sends it again
            # (any 0410 would clear it); the repeat redoes the idempotent steps.
            return Reply(None)
        if code == APPROVED and approval_at_stake(ctx):
            return Reply(answer, undelivered=lambda: self._spawn_undo(ctx, "connection gone"))
        return Reply(answer)

    async def _undo(self, ctx: TxnContext, why: str) -> bool:
        """Reverse the approval; False (logged) when the store or HSM refused."""
        try:
            await undo_approval(ctx, why)
        except Exception as exc:  # the sweeper cannot see an approved entry: log loudly
            _log.error("approval could not be reversed", why=why, error_type=type(exc).__name__)
            return False
        return True

    async def _undo_until_done(self, ctx: TxnContext, why: str) -> None:
        """``_undo`` again with jittered backoff until it succeeds (at most about
        UNDO_RETRY_MAX_S): nobody else will reverse an approval the terminal never saw."""
        backoff, waited_s = Backoff(0.2, 5.0), 0.0
        while not await self._undo(ctx, why) and waited_s < UNDO_RETRY_MAX_S:
            delay_s = backoff.next_s()
            waited_s += delay_s
            await asyncio.sleep(delay_s)

    def _spawn_undo(self, ctx: TxnContext, why: str) -> None:
        """Reverse an approval that will not be delivered, outside the request
        (which is being cancelled or is over); the pipeline owns the task."""
        task = asyncio.ensure_future(self._undo_until_done(ctx, why))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for the reversals started for undelivered approvals (at shutdown)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _run_steps(self, ctx: TxnContext) -> str:
        deadline_s = self.services.settings.limits.request_deadline_s
        remaining_s = max(deadline_s - (time.perf_counter() - ctx.started_s), 0.0)
        try:
            with self.deadlines.after(remaining_s):
                for step in ctx.route.steps:
                    code = await step(ctx)
                    if code is not None:
                        return code
        except TimeoutError:
            _log.warning("request deadline passed", deadline_s=deadline_s)
            return ctx.timeout_code
        except Exception as exc:
            code = code_for(exc)
            _log.info(
                "request failed",
                error_type=type(exc).__name__,
                response_code=code,
                field=getattr(exc, "field", None),
            )
            return code
        _log.error("route ended without an answer", route=ctx.route.name)
        return MALFUNCTION

    @staticmethod
    async def _finish_steps(ctx: TxnContext) -> None:
        """What must happen however the steps ended (answer, error, deadline):
        settle a sent request and release a reservation in the original.  Outside the
        deadline, like the journal; a failure is logged, the answer still leaves."""
        try:
            await finish_forwarded(ctx)
        except Exception as exc:
            _log.error("finishing the request failed", error_type=type(exc).__name__)

    @staticmethod
    async def _finish_risk(ctx: TxnContext, code: str) -> None:
        """Give back or keep the risk hold once the outcome is journaled; a failure
        is logged (the answer is decided), and a hold left kept is still released
        by a later void, reversal or the in-doubt sweeper."""
        try:
            await finish_risk(ctx, code)
        except Exception as exc:
            _log.error("finishing the risk step failed", error_type=type(exc).__name__)

    @staticmethod
    def _bind(frame: TerminalFrame, txn_type: str | None) -> None:
        bind_transaction(
            mti=frame.message.mti,
            trace=_text(frame, 11),
            terminal_id=_text(frame, 41),
            txn_type=txn_type,
        )

    def _malformed(self, exc: TerminalDecodeError, started_s: float) -> Reply:
        """30 when the header and MTI decoded; otherwise the bytes are garbage: close."""
        if exc.partial is None:
            self.services.metrics.frames_rejected.labels("garbage").inc()
            _log.warning(
                "undecodable frame; closing connection", offset=exc.offset, reason=exc.reason
            )
            return Reply(None, close=True)
        _log.info("malformed field", field=exc.field, offset=exc.offset, reason=exc.reason)
        return self._answer_bare(exc.partial, FORMAT_ERROR, UNROUTED, started_s)

    def _answer_bare(self, frame: TerminalFrame, code: str, label: str, started_s: float) -> Reply:
        self._observe(label, code, started_s)
        _log.info("answered", response_code=code)
        return Reply(bare_answer(frame, code))

    def _observe(self, txn_type: str, code: str, started_s: float) -> None:
        self.services.metrics.observe_request(txn_type, code, time.perf_counter() - started_s)


def _text(frame: TerminalFrame, number: int) -> str | None:
    value = frame.message.fields.get(number)
    return value if isinstance(value, str) else None
