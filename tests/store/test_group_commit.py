"""GroupCommit (posp.store.group_commit): what arrives while a batch is being
written goes together in the next one, each caller gets its own outcome, and
no caller resumes before its batch's write returned.  Pure asyncio: the
"database" here is a write function the test holds open with an event."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from structlog.testing import capture_logs

from posp.errors import DuplicateTransaction, StoreError, StoreUnavailable
from posp.store.group_commit import GroupCommit


class HeldWrite:
    """A write that records its batches and waits for ``release`` before returning
    (its "commit"); ``outcome`` maps each item to its result."""

    def __init__(self, *, held: bool = True) -> None:
        self.held = held  # False: every batch returns at once
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail: BaseException | None = None

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        self.started.set()
        if self.held:
            await self.release.wait()
            self.release.clear()
        self.started.clear()
        if self.fail is not None:
            raise self.fail
        return [DuplicateTransaction("dup") if i < 0 else i * 10 for i in items]


async def test_requests_arriving_during_a_commit_go_together_in_the_next() -> None:
    write = HeldWrite()
    group: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.create_task(group.submit(1))
    await write.started.wait()  # the lone first item is written at once
    later = [asyncio.create_task(group.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)  # let them queue (no timing: they only need to run once)
    assert not first.done() and not any(t.done() for t in later)
    write.release.set()  # first commit returns: only its caller resumes
    assert await first == 10
    await write.started.wait()
    assert write.batches == [[1], [2, 3, 4]]
    assert not any(t.done() for t in later)  # not told "written" before the commit
    write.release.set()
    assert [await t for t in later] == [20, 30, 40]
    assert (group.batches, group.items) == (2, 4)


async def test_each_caller_gets_its_own_outcome() -> None:
    write = HeldWrite(held=False)
    group: GroupCommit[int, int] = GroupCommit(write)
    results = await asyncio.gather(*(group.submit(n) for n in (5, -1, 6)), return_exceptions=True)
    assert results[0] == 50 and results[2] == 60
    assert isinstance(results[1], DuplicateTransaction)


async def test_a_failed_batch_fails_every_caller_of_it_with_its_own_exception() -> None:
    write = HeldWrite(held=False)
    write.fail = StoreUnavailable("insert_entry: database unavailable (OSError)")
    group: GroupCommit[int, int] = GroupCommit(write)
    results = await asyncio.gather(*(group.submit(n) for n in (1, 2)), return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert results[0] is not results[1]
    assert str(results[0]) == "insert_entry: database unavailable (OSError)"
    write.fail = None
    assert await group.submit(3) == 30  # the next batch is written again


async def test_items_with_the_same_key_never_share_a_batch() -> None:
    write = HeldWrite()
    group: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.create_task(group.submit(1, key="a"))
    await write.started.wait()
    rest = [asyncio.create_task(group.submit(n, key=k)) for n, k in ((2, "a"), (3, "b"), (4, "a"))]
    await asyncio.sleep(0)
    write.release.set()
    assert await first == 10
    await write.started.wait()
    write.release.set()
    assert [await rest[0], await rest[1]] == [20, 30]
    await write.started.wait()
    write.release.set()
    assert await rest[2] == 40
    assert write.batches == [[1], [2, 3], [4]]


async def test_a_caller_cancelled_before_its_batch_is_not_written() -> None:
    write = HeldWrite()
    group: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.create_task(group.submit(1))
    await write.started.wait()
    gone = asyncio.create_task(group.submit(2))
    kept = asyncio.create_task(group.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    write.release.set()
    await first
    await write.started.wait()
    write.release.set()
    assert await kept == 30
    assert write.batches == [[1], [3]]
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_a_caller_cancelled_during_the_commit_leaves_the_others_written() -> None:
    write = HeldWrite()
    group: GroupCommit[int, int] = GroupCommit(write)
    callers = [asyncio.create_task(group.submit(n)) for n in (1, 2)]
    await write.started.wait()
    callers[0].cancel()
    write.release.set()
    assert await callers[1] == 20
    assert write.batches == [[1, 2]]


async def test_close_waits_for_what_is_queued_and_refuses_more() -> None:
    write = HeldWrite()
    group: GroupCommit[int, int] = GroupCommit(write)
    pending = [asyncio.create_task(group.submit(n)) for n in (1, 2)]
    await write.started.wait()
    closing = asyncio.create_task(group.close())
    await asyncio.sleep(0)
    with pytest.raises(StoreError):
        await group.submit(3)
    write.release.set()
    await write.started.wait()
    write.release.set()
    await closing
    assert [await t for t in pending] == [10, 20]


async def test_batches_are_capped() -> None:
    write = HeldWrite(held=False)
    group: GroupCommit[int, int] = GroupCommit(write, max_batch=2)
    assert await asyncio.gather(*(group.submit(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert all(len(b) <= 2 for b in write.batches)


async def _queue_one_and_cancel_the_writer(
    group: GroupCommit[int, int], *callers: asyncio.Task[int]
) -> None:
    """Queue one more caller, cancel the running writer, and check that the queued
    caller and ``callers`` are cancelled with it."""
    queued = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0)  # it queues
    writer = group._writer
    assert writer is not None
    writer.cancel()
    for caller in (*callers, queued):
        with pytest.raises(asyncio.CancelledError):
            await caller


async def test_a_cancelled_writer_cancels_its_callers_and_the_queue() -> None:
    write = HeldWrite()
    group: GroupCommit[int, int] = GroupCommit(write)
    in_batch = asyncio.create_task(group.submit(1))
    await write.started.wait()
    await _queue_one_and_cancel_the_writer(group, in_batch)
    write.release.set()
    write.held = False
    assert await group.submit(3) == 30  # a new writer starts for the next caller


async def test_a_failing_kind_of_outcome_change_is_reported_to_its_callers_only() -> None:
    """A PostgreSQL outcome batch mixing two kinds (``finish_entry`` and
    ``update_entry``) writes each with its own statement and commit: when one kind's
    write fails (the connection lost), the other kind's callers get their own
    committed outcome, not that failure."""
    from posp.errors import StoreUnavailable
    from posp.store.postgres import PostgresStore, _Finish

    store = PostgresStore("postgresql://nobody@127.0.0.1:1/none")
    finish = _Finish(1, ("pending",), ("state",), ["approved"])
    update = _Finish(2, None, ("auth_code",), ["123456"])
    lost = StoreUnavailable("connection lost")

    async def finish_kind(batch: list[_Finish]) -> list[bool | BaseException]:
        if batch[0].from_states is None:
            raise lost
        return [True] * len(batch)

    store._finish_kind = finish_kind  # type: ignore[method-assign]
    assert await store._journal_batch([finish, update]) == [1, lost]


class Idle:
    """An ``idle`` callback that counts its calls and, with ``held``, waits for
    ``release`` (a connection being given back)."""

    def __init__(self, *, held: bool = False) -> None:
        self.held = held
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self.started.set()
        if self.held:
            await self.release.wait()


async def test_idle_runs_once_the_queue_has_run_dry_not_between_batches() -> None:
    write = HeldWrite()
    idle = Idle()
    group: GroupCommit[int, int] = GroupCommit(write, idle=idle)
    first = asyncio.create_task(group.submit(1))
    await write.started.wait()
    later = [asyncio.create_task(group.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    write.release.set()
    assert await first == 10
    await write.started.wait()  # the next batch follows at once: no idle between
    assert idle.calls == 0
    write.release.set()
    assert [await t for t in later] == [20, 30]
    await idle.started.wait()
    assert idle.calls == 1 and write.batches == [[1], [2, 3]]


async def test_items_arriving_while_idle_runs_are_written_after_it() -> None:
    write = HeldWrite(held=False)
    idle = Idle(held=True)
    group: GroupCommit[int, int] = GroupCommit(write, idle=idle)
    assert await group.submit(1) == 10
    await idle.started.wait()  # the writer is giving its connection back
    idle.started.clear()
    during = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0)
    assert not during.done() and write.batches == [[1]]  # not written beside idle
    idle.release.set()
    assert await during == 20  # the same writer takes it when idle returns
    await idle.started.wait()
    assert idle.calls == 2 and write.batches == [[1], [2]]


async def test_a_writer_cancelled_while_idle_cancels_the_queue() -> None:
    write = HeldWrite(held=False)
    idle = Idle(held=True)
    group: GroupCommit[int, int] = GroupCommit(write, idle=idle)
    assert await group.submit(1) == 10
    await idle.started.wait()
    await _queue_one_and_cancel_the_writer(group)
    idle.held = False
    assert await group.submit(3) == 30  # a new writer for the next caller


async def test_a_failing_idle_hook_is_logged_and_the_writer_goes_on() -> None:
    write = HeldWrite(held=False)
    calls = 0

    async def idle() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("release failed")

    group: GroupCommit[int, int] = GroupCommit(write, idle=idle)
    with capture_logs() as logs:
        assert await group.submit(1) == 10
        writer = group._writer
        if writer is not None:
            await writer  # ends normally: the hook's failure does not kill it
        assert await group.submit(2) == 20
    assert calls >= 1 and write.batches == [[1], [2]]
    assert any(e["event"] == "group commit: idle hook failed" for e in logs)
