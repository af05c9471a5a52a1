"""Group commit for a store's hot writes: concurrent callers of one kind of
write share one statement and one commit.

A caller queues its item and waits.  When no batch of its kind is being
written, the queued items are written at once; requests that arrive while that
batch's commit is in flight queue up and go together in the next one.  One
caller alone is written immediately (no added delay); under load the batches
grow by themselves, one commit's time apart.

Invariants:
* A caller resumes only after the batch holding its item has been committed
  (or has failed): it is never told "written" before its COMMIT returned, so
  every durability guarantee of the single write is kept.
* Each caller gets its own result or its own exception (``write`` returns one
  outcome per item, in order); an exception raised by ``write`` as a whole goes
  to every caller of that batch — e.g. ``StoreUnavailable`` when the connection
  was lost mid-commit, exactly what a lone write would have raised.
* Items with equal ``key`` (e.g. the same journal entry) never share a batch:
  the later one waits for the next, so they apply in arrival order.
* A caller cancelled while waiting does not cancel the batch: the other
  callers' writes go on, and its own item may still be committed — as a
  single write cancelled during its commit may be.  An item whose caller was
  cancelled before its batch was formed is not written at all.
* ``idle`` (optional) is awaited each time the queue runs dry after a run of
  batches, never between two batches that follow one another: the PostgreSQL
  store gives back there the connection its batches shared.  Items that arrive
  meanwhile are written by the same writer once it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from posp.errors import StoreError
from posp.log import get_logger

_log = get_logger("posp.store.group_commit")

T = TypeVar("T")
R = TypeVar("R")
V = TypeVar("V")

#: The most items one statement carries.
DEFAULT_MAX_BATCH = 256


@dataclass(slots=True)
class _Waiting(Generic[T, R]):
    item: T
    key: Hashable
    future: asyncio.Future[R] = field(repr=False)


class GroupCommit(Generic[T, R]):
    """Batches ``submit`` calls into calls of ``write(items)``, one at a time.

    ``write`` gets the items of one batch and returns, in the same order, each
    item's result or the exception its caller must see."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        idle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write = write
        self._max_batch = max_batch
        #: Awaited whenever the queue has run dry after a run of batches (e.g. to
        #: give back a connection held across them); a failure is logged.
        self._idle = idle
        self._queue: list[_Waiting[T, R]] = []
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        #: Batches written and items in them (for tests and benchmarks).
        self.batches = 0
        self.items = 0

    async def submit(self, item: T, key: Hashable = None) -> R:
        """Queue ``item`` and return its result once its batch is committed.
        ``key`` (when not None) keeps items with the same key in separate batches."""
        if self._closed:
            raise StoreError("the store is closed")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(item, key, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def close(self) -> None:
        """Refuse new items and wait until everything queued is written."""
        self._closed = True
        writer = self._writer
        if writer is not None:
            await asyncio.shield(writer)

    def _take(self) -> list[_Waiting[T, R]]:
        """The next batch: queued items in order, at most one per key."""
        batch: list[_Waiting[T, R]] = []
        rest: list[_Waiting[T, R]] = []
        keys: set[Hashable] = set()
        for waiting in self._queue:
            if waiting.future.done():  # its caller was cancelled: nothing is written
                continue
            if len(batch) >= self._max_batch or (waiting.key is not None and waiting.key in keys):
                rest.append(waiting)
                continue
            if waiting.key is not None:
                keys.add(waiting.key)
            batch.append(waiting)
        self._queue = rest
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._write_next()
                if not self._queue and self._idle is not None:
                    # items that arrive meanwhile find this writer running: the loop
                    # takes them when idle() returns
                    await self._cancellable(self._run_idle(self._idle), [])
        finally:
            self._writer = None

    @staticmethod
    async def _run_idle(idle: Callable[[], Awaitable[None]]) -> None:
        """``idle``; should it fail, the writer goes on (the failure is logged)."""
        try:
            await idle()
        except Exception as exc:
            _log.error("group commit: idle hook failed", error_type=type(exc).__name__)

    async def _write_next(self) -> None:
        batch = self._take()
        if not batch:  # only cancelled callers were queued
            return
        try:
            outcomes = await self._cancellable(self._write([w.item for w in batch]), batch)
            if len(outcomes) != len(batch):
                raise StoreError("group commit: one outcome per item expected")
        except Exception as exc:  # every caller of the batch sees it (not a cancellation)
            outcomes = [_copy(exc) for _ in batch]
        self.batches += 1
        self.items += len(batch)
        _settle(batch, outcomes)

    async def _cancellable(self, step: Awaitable[V], batch: list[_Waiting[T, R]]) -> V:
        """``step``; should the writer itself be cancelled meanwhile (the event loop
        is shutting down), ``batch``'s callers and those queued are cancelled with it."""
        try:
            return await step
        except asyncio.CancelledError:
            for waiting in [*batch, *self._queue]:
                waiting.future.cancel()
            self._queue = []
            raise


def _copy(exc: Exception) -> Exception:
    """An exception of the same type and message per caller (each raise adds to
    its traceback), caused by the original; the original when it cannot be rebuilt."""
    try:
        copy = type(exc)(*exc.args)
    except Exception:  # pragma: no cover - a driver exception with a special __init__
        return exc
    copy.__cause__ = exc.__cause__ if exc.__cause__ is not None else exc
    return copy


def _settle(batch: list[_Waiting[T, R]], outcomes: Sequence[R | BaseException]) -> None:
    for waiting, outcome in zip(batch, outcomes, strict=True):
        if waiting.future.done():  # cancelled caller: nobody waits for it
            continue
        if isinstance(outcome, BaseException):
            waiting.future.set_exception(outcome)
        else:
            waiting.future.set_result(outcome)
