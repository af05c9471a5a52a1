"""Request deadlines without a timer per request.

``asyncio.timeout`` arms and cancels one event-loop timer per use and enters
through two coroutines: about 8 µs on the development VM, and every terminal
request passes two (the server's and the pipeline's).  A request's deadline is
seconds away and is almost never reached, so exactness to the millisecond
buys nothing.  ``Deadlines`` keeps the deadlines in force in buckets of
``tick_s`` and one loop timer for the earliest bucket; entering and leaving a
deadline is a dictionary insert and delete.

``with deadlines.after(delay_s):`` behaves as ``async with
asyncio.timeout(delay_s):`` in the same task (a plain ``with``: nothing in it
needs to await):

* when the deadline passes, the task is cancelled; leaving the block with that
  ``CancelledError`` raises ``TimeoutError`` instead, unless the task was also
  cancelled for another reason meanwhile (shutdown), which then propagates;
* nested deadlines work as nested ``asyncio.timeout`` blocks do: the one that
  expired turns its own cancellation into ``TimeoutError``;
* a block left before its deadline leaves nothing behind.

Invariants:
* A deadline fires no earlier than ``tick_s / 10`` before its time (the loop
  timer's own rounding) and at most ``tick_s`` after it, plus the loop's lag.
* At most one loop timer is armed per ``Deadlines``; it fires for the earliest
  bucket in force and is armed again only while deadlines remain.
* A ``Deadlines`` serves one event loop at a time; used from another loop, it
  forgets the deadlines of the previous one (that loop is gone: a switch runs
  one loop per process).
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType
from typing import Final

#: The granularity of request deadlines: they fire at most this late.
DEFAULT_TICK_S: Final = 0.05

_CREATED: Final = 0
_ENTERED: Final = 1
_EXPIRING: Final = 2
_EXPIRED: Final = 3
_EXITED: Final = 4


class Deadline:
    """One deadline in force for one task (see the module docstring)."""

    __slots__ = ("_cancelling", "_delay_s", "_owner", "_state", "_task", "bucket", "when")

    def __init__(self, owner: Deadlines, when: float, delay_s: float | None = None) -> None:
        self._owner = owner
        self.when = when
        self._delay_s = delay_s
        self.bucket = 0
        self._state = _CREATED
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    def __enter__(self) -> Deadline:
        if self._state != _CREATED:
            raise RuntimeError("a deadline is entered once")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline must be entered inside a task")
        loop = task.get_loop()
        if self._delay_s is not None:
            self.when = loop.time() + self._delay_s
        self._task = task
        self._cancelling = task.cancelling()
        self._state = _ENTERED
        self._owner._add(self, loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == _EXPIRING:
            self._state = _EXPIRED
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
        elif self._state == _ENTERED:
            self._state = _EXITED
            self._owner._discard(self)
        self._task = None

    def expired(self) -> bool:
        """Did this deadline pass while it was in force?"""
        return self._state in (_EXPIRING, _EXPIRED)

    def _expire(self) -> None:
        if self._state == _ENTERED and self._task is not None:
            self._state = _EXPIRING
            self._task.cancel()


class Deadlines:
    """The deadlines of one event loop, in buckets of ``tick_s``."""

    __slots__ = ("_armed_bucket", "_buckets", "_loop", "_tick_s", "_timer")

    def __init__(self, tick_s: float = DEFAULT_TICK_S) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be positive")
        self._tick_s = tick_s
        self._buckets: dict[int, dict[Deadline, None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_bucket = 0

    def after(self, delay_s: float) -> Deadline:
        """A deadline ``delay_s`` after the ``with`` block is entered."""
        return Deadline(self, 0.0, delay_s)

    def at(self, when: float) -> Deadline:
        """A deadline at loop time ``when``, for ``with``."""
        return Deadline(self, when)

    def in_force(self) -> int:
        """How many deadlines are in force (for tests and introspection)."""
        return sum(len(b) for b in self._buckets.values())

    def _add(self, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            self._rebind(loop)
        bucket = math.ceil(deadline.when / self._tick_s)
        deadline.bucket = bucket
        members = self._buckets.get(bucket)
        if members is None:
            members = self._buckets[bucket] = {}
        members[deadline] = None
        if self._timer is None or bucket < self._armed_bucket:
            self._arm(bucket)

    def _discard(self, deadline: Deadline) -> None:
        members = self._buckets.get(deadline.bucket)
        if members is not None:
            members.pop(deadline, None)
            if not members:
                del self._buckets[deadline.bucket]

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buckets.clear()
        self._loop = loop

    def _arm(self, bucket: int) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._armed_bucket = bucket
        self._timer = self._loop.call_at(bucket * self._tick_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        assert self._loop is not None
        # Due: every bucket whose time has come (a tenth of a tick of slack for
        # the loop timer's rounding, so a timer fired a hair early still counts).
        due_before = (self._loop.time() + self._tick_s / 10) / self._tick_s
        due = [b for b in self._buckets if b <= due_before]
        for bucket in sorted(due):
            for deadline in self._buckets.pop(bucket):
                deadline._expire()
        if self._buckets:
            self._arm(min(self._buckets))
