"""NetworkLink ⇄ issuer_sim over real sockets: sign-on, echo, availability, deadlines."""

from __future__ import annotations

import asyncio
import socket

import pytest

from issuer_sim.rules import DROP_AMOUNT_MINOR
from issuer_sim.server import IssuerServer
from posp.errors import NetworkTimeout, NetworkUnavailable
from posp.network.link import ResponseMacInvalid
from tests.network.cards import PAN, PIN, purchase
from tests.network.conftest import Pair, metric, open_link


async def test_purchase_with_correct_pin_is_approved_and_debits(pair: Pair) -> None:
    """A PIN purchase is approved with an auth code and debits the account once."""
    before = await pair.issuer.balance(PAN)
    request = purchase(12345, pin=PIN)
    response = await pair.link.send(request)
    assert response.mti == "0210"
    assert response.get(39) == "00"
    assert len(str(response.get(38))) == 6
    assert response.get(63) == "CUP"
    assert (response.get(11), response.get(7), response.get(32)) == (
        request.get(11),
        request.get(7),
        "48010000",
    )
    assert await pair.issuer.balance(PAN) == before - 12345
    assert metric(pair.registry, "posp_network_requests_total", mti="0200", response_code="00")


async def test_link_signs_on_every_connection_and_reports_up(pair: Pair) -> None:
    """Both connections sign on (0800/001) and the link-state gauge says up."""
    assert metric(pair.registry, "posp_network_connections_signed_on") == 2
    assert metric(pair.registry, "posp_network_link_up") == 1
    assert pair.issuer.metrics.requests.labels("0800", "00")._value.get() == 2


async def test_echo_sent_after_idle(issuer: IssuerServer) -> None:
    """With a short idle time the link echoes (0800/301) and stays signed on."""
    link = await open_link(issuer.port, echo_idle_s=0.05, connections=1)
    try:
        await asyncio.sleep(0.4)
        assert issuer.metrics.requests.labels("0800", "00")._value.get() >= 3
        assert link.signed_on
    finally:
        await link.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_link_down_raises_unavailable_at_once() -> None:
    """With no network listening, send fails with NetworkUnavailable without waiting."""
    link = await open_link(_free_port(), connect_timeout_s=0.2)
    try:
        assert not link.signed_on
        call = link.send(purchase(100))
        with pytest.raises(NetworkUnavailable):
            call.send(None)  # raised on its first step: nothing awaited, nothing waited for
    finally:
        await link.close()


async def test_link_reconnects_after_network_restart(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the connections drop the link goes down, then signs on again by itself.

    The reconnect delay is jittered and may be almost nothing, so "down" is read
    from the link's own state changes rather than raced with a send."""
    link = pair.link
    states: list[bool] = []
    signed_on_again = asyncio.Event()
    set_signed_on = link._set_signed_on

    def record(conns: list[object]) -> None:
        set_signed_on(conns)  # type: ignore[arg-type]
        states.append(bool(conns))
        # Every connection back (not just the first): the link is quiet again, so
        # nothing is half-connected when the fixtures close it.
        if False in states and len(conns) == link.settings.connections:
            signed_on_again.set()

    monkeypatch.setattr(link, "_set_signed_on", record)
    for conn in list(pair.issuer.connections):
        conn.close()
    await asyncio.wait_for(signed_on_again.wait(), timeout=10)
    assert False in states  # it went down before coming back
    response = await link.send(purchase(100, pin=PIN))
    assert response.get(39) == "00"


async def test_a_link_that_is_down_answers_unavailable_at_once(pair: Pair) -> None:
    """With no signed-on connection a send fails fast (the terminal gets 91)."""
    await pair.link.close()
    with pytest.raises(NetworkUnavailable):
        await pair.link.send(purchase(100))


async def test_dropped_response_times_out_at_the_deadline(pair: Pair) -> None:
    """The demo drop amount gets no answer: NetworkTimeout after timeout_s, not before.

    Ordered against two loop timers rather than measured on a clock: one due just
    before the deadline has fired when the call fails, one due long after has not
    (timers fire in due order however loaded the machine is)."""
    loop = asyncio.get_running_loop()
    before, after = asyncio.Event(), asyncio.Event()
    timers = [loop.call_later(0.25, before.set), loop.call_later(5.0, after.set)]
    try:
        with pytest.raises(NetworkTimeout):
            await pair.link.send(purchase(DROP_AMOUNT_MINOR), timeout_s=0.3)
        assert before.is_set() and not after.is_set()
    finally:
        for timer in timers:
            timer.cancel()


async def test_late_response_is_counted_unmatched(pair: Pair) -> None:
    """An answer arriving after its deadline matches nothing and is counted."""
    pair.issuer.rules.latency_ms = 200
    with pytest.raises(NetworkTimeout):
        await pair.link.send(purchase(100), timeout_s=0.05)
    await asyncio.sleep(0.4)
    assert metric(pair.registry, "posp_network_unmatched_responses_total") == 1


async def test_mac_failure_is_detected_on_both_sides(pair: Pair) -> None:
    """With a ZAK the network does not share, the network answers A0 unsigned and the
    link rejects that answer as ResponseMacInvalid (a NetworkTimeout: reverse it)."""
    other = await pair.switch_hsm.generate_key("008")
    pair.link.zak.install(other.under_lmk)
    before = await pair.issuer.balance(PAN)
    with pytest.raises(ResponseMacInvalid):
        await pair.link.send(purchase(500, pin=PIN))
    assert pair.issuer.metrics.mac_failures._value.get() == 1
    assert metric(pair.registry, "posp_network_mac_failures_total") == 1
    assert await pair.issuer.balance(PAN) == before
