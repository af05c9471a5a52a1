"""posp.deadline: asyncio.timeout's behaviour, one loop timer for all deadlines.

No test waits on the clock: each waits on the deadline itself (an event that
is never set, cut off by the deadline)."""

from __future__ import annotations

import asyncio
import math

import pytest

from posp.deadline import Deadlines
from posp.framing import frame_binary
from posp.metrics import SwitchMetrics
from posp.pipeline.engine import Reply
from posp.server import TerminalServer
from posp.settings import LimitSettings


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


async def test_a_deadline_already_past_cancels_the_first_await() -> None:
    deadlines = Deadlines(tick_s=0.05)
    turns = 0
    with pytest.raises(TimeoutError), deadlines.after(0):
        while True:
            await asyncio.sleep(0)
            turns += 1
    assert turns == 0  # as with asyncio.timeout(0): not a tick later
    assert deadlines.in_force() == 0


async def test_an_infinite_deadline_is_none() -> None:
    deadlines = Deadlines(tick_s=0.01)
    with deadlines.after(math.inf) as deadline:
        await asyncio.sleep(0)
        assert deadlines.in_force() == 0
        assert deadlines._timer is None  # type: ignore[attr-defined]
    assert not deadline.expired()


def test_a_nan_deadline_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Deadlines().after(math.nan)


async def test_nested_deadlines_due_in_one_tick_expire_one_at_a_time() -> None:
    # Both fall in the same 50 ms bucket: the inner expires first and is the
    # inner block's TimeoutError; the outer block goes on, as asyncio's would.
    deadlines = Deadlines(tick_s=0.05)
    seen: list[str] = []
    with deadlines.after(0.04) as outer:
        try:
            with deadlines.after(0.01):
                await _forever()
        except TimeoutError:
            seen.append("inner timeout")
        await asyncio.sleep(0)
        seen.append("outer continued")
    assert seen == ["inner timeout", "outer continued"]
    assert not outer.expired()
    assert deadlines.in_force() == 0


async def test_another_exception_while_expiring_propagates_as_it_is() -> None:
    deadlines = Deadlines(tick_s=0.01)
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(ValueError, match="cleanup failed"), deadlines.after(0.02) as deadline:
        try:
            await _forever()
        except asyncio.CancelledError:
            raise ValueError("cleanup failed") from None
    assert deadline.expired()
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation left pending for this task


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


async def test_one_timer_serves_every_deadline_in_force(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arms: list[int] = []
    real_arm = Deadlines._arm

    def counting_arm(self: Deadlines, bucket: int) -> None:
        arms.append(bucket)
        real_arm(self, bucket)

    monkeypatch.setattr(Deadlines, "_arm", counting_arm)
    deadlines = Deadlines(tick_s=0.01)
    entered = asyncio.Event()
    count = 50
    ready = 0
    first_when: list[float] = []

    async def guarded(delay_s: float) -> None:
        nonlocal ready
        with deadlines.after(delay_s) as deadline:
            if not first_when:
                first_when.append(deadline.when)
            ready += 1
            if ready == count:
                entered.set()
            await _forever()

    tasks = [asyncio.ensure_future(guarded(30 + i)) for i in range(count)]
    await entered.wait()
    assert deadlines.in_force() == count
    assert arms == [math.ceil(first_when[0] / 0.01)]  # armed once, for the earliest
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


def test_a_second_event_loop_forgets_the_first_loops_deadlines() -> None:
    deadlines = Deadlines(tick_s=0.01)
    first = asyncio.new_event_loop()
    entered = asyncio.Event()

    async def hold() -> None:
        with deadlines.after(60):
            entered.set()
            await _forever()

    async def start() -> asyncio.Task[None]:
        task = asyncio.ensure_future(hold())
        await entered.wait()
        return task

    left = first.run_until_complete(start())
    assert deadlines.in_force() == 1  # the first loop stops with it in force
    first.close()

    async def fresh() -> int:
        try:
            with deadlines.after(0.02):
                assert deadlines.in_force() == 1  # only this loop's
                await _forever()
        except TimeoutError:
            return deadlines.in_force()
        return -1

    assert asyncio.run(fresh()) == 0
    del left


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


class _HangingPipeline:
    """A pipeline whose requests never finish (the server's deadline must answer)."""

    def __init__(self) -> None:
        self.deadlines = Deadlines(tick_s=0.01)
        self.entered = asyncio.Event()

    async def handle(self, body: bytes) -> Reply:
        self.entered.set()
        await _forever()
        raise AssertionError("unreachable")

    def shed(self, body: bytes, code: str = "96") -> Reply:
        return Reply(b"shed " + body)


async def _serve(
    limits: LimitSettings,
) -> tuple[TerminalServer, _HangingPipeline, SwitchMetrics]:
    pipeline = _HangingPipeline()
    metrics = SwitchMetrics()
    server = TerminalServer(pipeline, limits, metrics)  # type: ignore[arg-type]
    await server.start("127.0.0.1", 0)
    return server, pipeline, metrics


async def test_the_servers_deadline_answers_a_hung_request_with_the_shed_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("posp.server.ANSWER_GRACE_S", 0.0)
    server, pipeline, metrics = await _serve(LimitSettings(request_deadline_s=0.05))
    assert server.deadlines is pipeline.deadlines  # one timer for both deadlines
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(frame_binary(b"ping"))
        length = int.from_bytes(await reader.readexactly(2), "big")
        assert await reader.readexactly(length) == b"shed ping"
        shed = metrics.registry.get_sample_value("posp_shed_total", {"reason": "deadline"})
        assert shed == 1.0
        assert pipeline.deadlines.in_force() == 0
        writer.close()
    finally:
        await server.stop(0)


async def test_stopping_the_server_leaves_no_deadline_in_force() -> None:
    server, pipeline, _ = await _serve(LimitSettings(request_deadline_s=60))
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(frame_binary(b"ping"))
    await pipeline.entered.wait()
    assert pipeline.deadlines.in_force() == 1  # the server's (the fake pipeline sets none)
    await server.stop(0.01)  # (0 would mean "drain without a limit")
    assert pipeline.deadlines.in_force() == 0
    writer.close()
