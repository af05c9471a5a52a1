"""The SAF forwarder outlives failures that are not network errors (an HSM timeout
while MACing the 0420, a store bug): the item is retried, the loop keeps running."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from posp.errors import HsmTimeout
from posp.iso8583 import Message
from posp.network.mapping import network_reversal
from posp.network.metrics import LinkMetrics
from posp.network.saf import SafForwarder, saf_payload
from posp.store import JournalEntry, SafItem, open_store
from posp.store.api import Store
from tests.stackfixtures import eventually


class FlakyLink:
    """Raises HsmTimeout on the first ``failures`` sends, then confirms with a 0430."""

    signed_on = True

    def __init__(self, failures: int) -> None:
        self.metrics = LinkMetrics(CollectorRegistry())
        self.failures = failures
        self.calls = 0

    def when_up(self, callback: Callable[[], None]) -> None:
        self.on_up = callback

    async def send(self, message: Message, timeout_s: float | None = None) -> Message:
        self.calls += 1
        if self.calls <= self.failures:
            raise HsmTimeout("HSM did not answer before the deadline")
        return Message("0430", {39: "00"})


async def _queued_store() -> Store:
    store = open_store("sqlite:///:memory:")
    await store.open()
    entry = JournalEntry("10000001", "898100000000001", "000001", "000001", "purchase", "0200")
    entry_id = await store.insert_entry(entry)
    fields: dict[int, str | bytes] = {2: "6225880000000000010", 3: "000000", 4: "000000000001"}
    fields |= {7: "0101000000", 11: "000001", 32: "12345678", 33: "12345678"}
    sent = Message("0200", fields)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    payload = saf_payload(network_reversal(sent))
    await store.enqueue_saf(SafItem(entry_id, payload, next_attempt_at=past))
    return store


async def test_an_hsm_timeout_while_sending_reschedules_the_item_and_the_loop_goes_on() -> None:
    store = await _queued_store()
    link: Any = FlakyLink(failures=2)
    saf = SafForwarder(store, link, min_backoff_s=0.01, max_backoff_s=0.02, poll_interval_s=0.02)
    await saf.start()
    try:
        await eventually(lambda: saf.delivered == 1, timeout_s=3.0)
        assert link.calls == 3
        assert await store.saf_depth() == 0
    finally:
        await saf.close()
        await store.close()


async def test_an_unexpected_error_in_a_pass_does_not_end_the_forwarder() -> None:
    store = await _queued_store()
    real_due = store.due_saf
    calls = []

    async def broken_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("store bug")
        return await real_due(*args, **kwargs)

    store.due_saf = broken_once  # type: ignore[method-assign]
    link: Any = FlakyLink(failures=0)
    saf = SafForwarder(store, link, min_backoff_s=0.01, poll_interval_s=0.02)
    await saf.start()
    try:
        await eventually(lambda: saf.delivered == 1, timeout_s=3.0)
        assert saf._task is not None and not saf._task.done()
    finally:
        await saf.close()
        await store.close()


async def test_a_link_that_is_down_is_no_attempt_and_its_sign_on_sends_at_once() -> None:
    """While the link is down nothing is leased or rescheduled (no backoff grows:
    a restarted switch once left a 0420 waiting past its audit); the sign-on wakes
    the forwarder, which sends without waiting for its poll interval."""
    store = await _queued_store()
    link: Any = FlakyLink(failures=0)
    link.signed_on = False
    saf = SafForwarder(store, link, min_backoff_s=600.0, poll_interval_s=3600.0)
    try:
        assert await saf.forward_due() == 0
        assert await saf.forward_due() == 0
        assert link.calls == 0
        item = await store.get_saf(1)
        assert item is not None and item.attempts == 0  # never tried, still due
        await saf.start()
        link.signed_on = True
        link.on_up()
        await eventually(lambda: saf.delivered == 1, timeout_s=10.0)
        assert link.calls == 1 and await store.saf_depth() == 0
    finally:
        await saf.close()
        await store.close()
