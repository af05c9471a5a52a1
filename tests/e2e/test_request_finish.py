"""What happens however a financial request's steps end: a refund reservation is
released unless the refund is approved, and a request the deadline cut off after
it was sent is journaled timed_out with a queued 0420 (review findings 1 and 7)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from issuer_sim.rules import DROP_AMOUNT_MINOR
from posp.store.api import TIMED_OUT
from terminals.cards import TerminalCard
from tests.e2e.conftest import MERCHANT_ID, Stack, eventually
from tests.e2e.tamper import tampered


async def test_a_refund_failing_before_forwarding_releases_its_reservation(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    purchase = await terminal.transact(lambda m: m.purchase(card, 5000, pin=card.pin))
    assert purchase.approved and purchase.message is not None
    rrn, date = purchase.message.text(37), purchase.message.text(13)

    def bad_pin_refund(m: Any) -> bytes:
        frame = m.refund(card, rrn, date, 5000)
        return tampered(m, frame, {52: b"\x11" * 8, 53: "2600000000000000", 26: "12"})

    failed = await terminal.transact(bad_pin_refund)
    assert failed.response_code == "99"
    full = await terminal.transact(lambda m: m.refund(card, rrn, date, 5000))
    assert full.approved
    assert stack.store is not None
    original = await stack.store.find_by_rrn(rrn, local_date=date, merchant_id=MERCHANT_ID)
    assert original is not None and original.refunded_minor == 5000


def _shorten_deadline(stack: Stack, deadline_s: float) -> None:
    assert stack.switch is not None and stack.switch.pipeline is not None
    services = stack.switch.pipeline.services
    limits = services.settings.limits.model_copy(update={"request_deadline_s": deadline_s})
    services.settings = services.settings.model_copy(update={"limits": limits})


def _slow_once(target: Any, method: str, delay_s: float) -> None:
    """The first call of ``target.method`` sleeps ``delay_s`` first (a slow store)."""
    original = getattr(target, method)
    calls = []

    async def slow(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(delay_s)
        return await original(*args, **kwargs)

    setattr(target, method, slow)


@pytest.mark.parametrize("slow_method", ["transition", "enqueue_saf"])
async def test_a_deadline_inside_the_no_answer_handling_still_times_out_and_reverses(
    stack: Stack, card: TerminalCard, slow_method: str
) -> None:
    terminal = await stack.terminal()
    before = await stack.balance(card)
    _shorten_deadline(stack, 1.5)  # the network timeout (1 s) ends first; then the store stalls
    assert stack.store is not None
    _slow_once(stack.store, slow_method, 2.0)
    outcome = await terminal.transact(lambda m: m.purchase(card, DROP_AMOUNT_MINOR))
    assert outcome.response_code == "98"
    entry = await stack.store.find_by_trace("10000001", "000001", outcome.trace)
    assert entry is not None and entry.state == TIMED_OUT
    # The queued 0420 undoes the hold the dropped request made at the issuer.
    await eventually(lambda: _balance_is(stack, card, before))


async def _balance_is(stack: Stack, card: TerminalCard, expected: int) -> bool:
    return await stack.balance(card) == expected and await stack.held(card) == 0
