"""posp.deadline: asyncio.timeout's behaviour, one loop timer for all deadlines.

No test waits on the clock: each waits on the deadline itself (an event that
is never set, cut off by the deadline)."""

from __future__ import annotations

import asyncio

import pytest

from posp.deadline import Deadlines


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_a_passed_deadline_raises_timeout_error_and_leaves_nothing() -> None:
    deadlines = Deadlines(tick_s=0.01)
    with pytest.raises(TimeoutError), deadlines.after(0.02) as deadline:
        await _forever()
    assert deadline.expired()
    assert deadlines.in_force() == 0


async def test_a_block_left_in_time_is_not_cancelled_afterwards() -> None:
    deadlines = Deadlines(tick_s=0.01)
    with deadlines.after(0.02) as deadline:
        await asyncio.sleep(0)
    assert not deadline.expired()
    assert deadlines.in_force() == 0
    # The first deadline's time passes during this wait without touching it.
    with pytest.raises(TimeoutError), deadlines.after(0.05) as later:
        await _forever()
    assert later.expired()
    assert not deadline.expired()


async def test_a_deadline_already_past_fires_on_the_next_turn() -> None:
    deadlines = Deadlines(tick_s=0.05)
    with pytest.raises(TimeoutError), deadlines.after(0):
        await _forever()


async def test_the_inner_deadline_expiring_is_the_inner_blocks_timeout() -> None:
    deadlines = Deadlines(tick_s=0.01)
    with deadlines.after(60) as outer:
        with pytest.raises(TimeoutError), deadlines.after(0.02) as inner:
            await _forever()
        await asyncio.sleep(0)  # the outer block goes on, not cancelled
    assert inner.expired()
    assert not outer.expired()
    assert deadlines.in_force() == 0


async def test_the_outer_deadline_expiring_passes_through_the_inner_block() -> None:
    deadlines = Deadlines(tick_s=0.01)
    seen: list[str] = []
    with pytest.raises(TimeoutError), deadlines.after(0.02) as outer:
        try:
            with deadlines.after(60) as inner:
                await _forever()
        except asyncio.CancelledError:
            seen.append("inner saw the cancellation")
            raise
    assert seen == ["inner saw the cancellation"]
    assert outer.expired()
    assert not inner.expired()
    assert deadlines.in_force() == 0


async def test_a_cancellation_from_outside_is_not_turned_into_a_timeout() -> None:
    deadlines = Deadlines(tick_s=0.01)
    entered = asyncio.Event()

    async def guarded() -> None:
        with deadlines.after(60):
            entered.set()
            await _forever()

    task = asyncio.ensure_future(guarded())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines.in_force() == 0


async def test_a_cancellation_from_outside_wins_over_a_deadline_passing_with_it() -> None:
    deadlines = Deadlines(tick_s=0.01)
    entered = asyncio.Event()
    holder: list[object] = []

    async def guarded() -> None:
        with deadlines.after(60) as deadline:
            holder.append(deadline)
            entered.set()
            await _forever()

    task = asyncio.ensure_future(guarded())
    await entered.wait()
    deadline = holder[0]
    deadline._expire()  # type: ignore[attr-defined]  # the deadline passes ...
    task.cancel()  # ... and shutdown cancels the task in the same turn
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_deadlines_expire_in_their_order() -> None:
    deadlines = Deadlines(tick_s=0.01)
    order: list[float] = []

    async def cut_at(delay_s: float) -> None:
        try:
            with deadlines.after(delay_s):
                await _forever()
        except TimeoutError:
            order.append(delay_s)

    await asyncio.gather(cut_at(0.2), cut_at(0.01), cut_at(0.08), cut_at(0.04))
    assert order == [0.01, 0.04, 0.08, 0.2]
    assert deadlines.in_force() == 0


async def test_one_timer_serves_every_deadline_in_force() -> None:
    deadlines = Deadlines(tick_s=0.01)
    entered = asyncio.Event()
    count = 50
    ready = 0

    async def guarded(delay_s: float) -> None:
        nonlocal ready
        with deadlines.after(delay_s):
            ready += 1
            if ready == count:
                entered.set()
            await _forever()

    tasks = [asyncio.ensure_future(guarded(30 + i)) for i in range(count)]
    await entered.wait()
    assert deadlines.in_force() == count
    timer = deadlines._timer  # type: ignore[attr-defined]
    assert timer is not None
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert deadlines.in_force() == 0


async def test_a_deadline_is_entered_once() -> None:
    deadline = Deadlines().after(1)
    with deadline:
        pass
    with pytest.raises(RuntimeError, match="entered once"), deadline:
        pass


def test_a_deadline_outside_a_task_is_refused() -> None:
    with pytest.raises(RuntimeError), Deadlines().after(1):
        pass


def test_a_tick_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tick_s"):
        Deadlines(tick_s=0)


def test_a_second_event_loop_starts_afresh() -> None:
    deadlines = Deadlines(tick_s=0.01)

    async def cut() -> bool:
        try:
            with deadlines.after(0.02):
                await _forever()
        except TimeoutError:
            return True
        return False

    assert asyncio.run(cut())
    assert asyncio.run(cut())
