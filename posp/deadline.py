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
  any other exception leaving the block propagates as it is;
* nested deadlines work as nested ``asyncio.timeout`` blocks do: the one that
  expired turns its own cancellation into ``TimeoutError``.  Two deadlines of
  one task due in the same tick expire one at a time, earliest first: the
  later one a tick after, if its block is still open then;
* a deadline already past cancels on the next loop turn (``call_soon``, as
  ``asyncio.timeout`` does); ``math.inf`` is no deadline; NaN is refused;
* a block left before its deadline leaves nothing behind.

Invariants:
* A deadline fires at most one tick (``tick_s``) after its time — two for
  the later of a task's two deadlines due in one tick — plus the loop's own
  lag; never before it, but for the loop timer's rounding (under a
  millisecond).
* At most one loop timer is armed per ``Deadlines``, for the earliest bucket
  in force; it is armed again only while deadlines remain.
* A ``Deadlines`` serves one event loop at a time; used from another loop, it
  forgets the deadlines of the previous one (that loop is gone: a switch runs
  one loop per process).
* The server and the pipeline share one ``Deadlines`` (the pipeline's), so the
  nested deadlines of a request are ordered by one timer.
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
#: The bucket of a deadline that waits in none (past already, or infinite).
_UNSCHEDULED: Final = -1


class Deadline:
    """One deadline in force for one task (see the module docstring)."""

    __slots__ = ("_cancelling", "_delay_s", "_owner", "_state", "_task", "bucket", "when")

    def __init__(self, owner: Deadlines, delay_s: float) -> None:
        self._owner = owner
        self._delay_s = delay_s
        self.when = 0.0  # loop time, set when entered
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

    @property
    def task(self) -> asyncio.Task[object] | None:
        """The task this deadline guards while it is in force."""
        return self._task

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
        """A deadline ``delay_s`` after the ``with`` block is entered (``math.inf``:
        none); NaN is refused."""
        if delay_s != delay_s:
            raise ValueError("a deadline's delay must be a number, not NaN")
        return Deadline(self, delay_s)

    def in_force(self) -> int:
        """How many deadlines wait in the buckets (for tests and introspection)."""
        return sum(len(b) for b in self._buckets.values())

    def _add(self, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            self._rebind(loop)
        when = deadline.when
        if when == math.inf:
            deadline.bucket = _UNSCHEDULED  # no deadline at all
            return
        if when <= loop.time():
            # Already past: cancelled on the next loop turn, as asyncio.timeout does.
            deadline.bucket = _UNSCHEDULED
            loop.call_soon(deadline._expire)
            return
        self._schedule(deadline, math.ceil(when / self._tick_s))

    def _schedule(self, deadline: Deadline, bucket: int) -> None:
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
        now = self._loop.time()
        # Due: the bucket the timer was armed for (a loop timer may fire a hair
        # early) and every bucket whose time has passed.
        due = [b for b in self._buckets if b <= self._armed_bucket or b * self._tick_s <= now]
        expiring = sorted((d for b in due for d in self._buckets.pop(b)), key=lambda d: d.when)
        cancelled: set[object] = set()
        later = math.floor(now / self._tick_s) + 1
        for deadline in expiring:
            task = deadline.task
            if task in cancelled:
                # A nested deadline of a task this tick already cancels: its turn
                # comes after the inner block has handled its own (as with two
                # asyncio.timeout blocks whose times are further apart than a tick).
                self._schedule(deadline, later)
                continue
            cancelled.add(task)
            deadline._expire()
        if self._buckets and self._timer is None:
            self._arm(min(self._buckets))
