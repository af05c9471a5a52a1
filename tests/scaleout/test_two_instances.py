"""Two switch instances on one PostgreSQL behave as one switch: zone keys rotated by
the network reach both, and a terminal may reach either instance for any follow-up
(void, reversal, settlement) of what it did through the other."""

from __future__ import annotations

import asyncio

import pytest

from posp.network.zone import KEY_KIND_ZAK, KEY_KIND_ZPK
from terminals.session import TerminalSession
from tests.e2e.tamper import send_raw
from tests.scaleout.conftest import KEY_GRACE_S, ScaleOut
from tests.stackfixtures import eventually

pytestmark = pytest.mark.postgres


async def pin_purchase(session: TerminalSession, scaleout: ScaleOut, amount_minor: int) -> str:
    card = scaleout.stack.cards[0]
    outcome = await session.transact(lambda m: m.purchase(card, amount_minor, pin=card.pin))
    return str(outcome.response_code)


async def test_zone_key_rotation_reaches_both_instances(scaleout: ScaleOut) -> None:
    """ZPK and ZAK rotated by the network: both instances switch to the new keys, and
    PIN purchases through each are approved after the old keys' grace period."""
    issuer = scaleout.stack.issuer
    assert issuer is not None
    on_a = await scaleout.terminal("10000001", scaleout.a)
    on_b = await scaleout.terminal("10000002", scaleout.b)
    assert [await pin_purchase(s, scaleout, 100) for s in (on_a, on_b)] == ["00", "00"]
    await scaleout.all_linked()
    assert await issuer.initiate_key_exchange(KEY_KIND_ZPK)
    assert await issuer.initiate_key_exchange(KEY_KIND_ZAK)
    for switch in (scaleout.a, scaleout.b):
        assert switch.link.zpk_lmk == issuer.zpk.current
        assert switch.link.zak_lmk == issuer.zak.current
    await asyncio.sleep(KEY_GRACE_S + 0.2)  # old ZPK and ZAK no longer accepted
    for _ in range(3):
        assert [await pin_purchase(s, scaleout, 100) for s in (on_a, on_b)] == ["00", "00"]
    offers = issuer.metrics.registry.get_sample_value(
        "issuer_sim_key_offers_total", {"key": "zak", "result": "ok"}
    )
    assert offers == 4  # two connections per instance, each offered once


async def test_void_through_b_of_a_purchase_through_a_is_approved(scaleout: ScaleOut) -> None:
    card = scaleout.stack.cards[1]
    on_a = await scaleout.terminal("10000001", scaleout.a)
    before = await scaleout.stack.balance(card)
    purchase = await on_a.transact(lambda m: m.purchase(card, 1234, pin=card.pin))
    assert purchase.approved and await scaleout.stack.balance(card) == before - 1234
    on_b = scaleout.session_at(on_a, scaleout.b)
    void = await on_b.transact(lambda m: m.purchase_void(purchase.trace))
    assert void.approved, void
    assert await scaleout.stack.balance(card) == before


async def test_reversal_through_b_of_a_purchase_through_a_restores_once(
    scaleout: ScaleOut,
) -> None:
    """The terminal never saw A's answer; its 0400 goes to B, which finds the original
    in the shared journal: the issuer credits the money back exactly once."""
    card = scaleout.stack.cards[2]
    on_a = await scaleout.terminal("10000001", scaleout.a)
    machine = on_a.machine
    before = await scaleout.stack.balance(card)
    answer = await send_raw(scaleout.a.port, machine.purchase(card, 2500, pin=card.pin))
    assert answer.message.text(39) == "00"
    assert await scaleout.stack.balance(card) == before - 2500
    machine.on_timeout()  # the terminal timed out: its reversal is due
    reversal_frame = machine.reversal()
    on_b = scaleout.session_at(on_a, scaleout.b)
    reversal = await on_b.exchange(reversal_frame)
    assert reversal.approved, reversal
    # B may deliver the 0420 through its store-and-forward, asynchronously
    await eventually(lambda: _balance_is(scaleout, card.pan, before), timeout_s=5.0)
    repeat = await send_raw(scaleout.b.port, reversal_frame)
    assert repeat.message.text(39) == "00"
    await asyncio.sleep(0.3)
    assert await scaleout.stack.balance(card) == before


async def _balance_is(scaleout: ScaleOut, pan: str, expected: int) -> bool:
    issuer = scaleout.stack.issuer
    assert issuer is not None
    return await issuer.balance(pan) == expected


async def test_settlement_through_b_counts_transactions_made_through_a(
    scaleout: ScaleOut,
) -> None:
    card = scaleout.stack.cards[3]
    on_a = await scaleout.terminal("10000001", scaleout.a)
    for amount in (1000, 2000):
        assert (await on_a.transact(lambda m, a=amount: m.purchase(card, a, pin=card.pin))).approved
    on_b = scaleout.session_at(on_a, scaleout.b)
    settled = await on_b.settle()
    assert settled.approved and settled.balanced, settled
    store = scaleout.stack.store
    assert store is not None
    settlement = await store.get_settlement("10000001", "000001")
    assert settlement is not None and settlement.domestic_balanced
    assert (settlement.domestic.debit_count, settlement.domestic.debit_amount_minor) == (2, 3000)


async def test_rrns_from_the_two_instances_never_collide(scaleout: ScaleOut) -> None:
    """Purchases through both instances at once: every RRN distinct, each carrying
    its instance's node id."""
    card = scaleout.stack.cards[4]
    sessions = [
        await scaleout.terminal(f"1000001{i}", switch)
        for i, switch in enumerate((scaleout.a, scaleout.b, scaleout.a, scaleout.b))
    ]

    async def rrns(session: TerminalSession) -> list[str]:
        found = []
        for _ in range(5):
            outcome = await session.transact(lambda m: m.purchase(card, 100, pin=card.pin))
            assert outcome.approved and outcome.message is not None
            found.append(outcome.message.text(37))
        return found

    batches = await asyncio.gather(*(rrns(s) for s in sessions))
    every = [rrn for batch in batches for rrn in batch]
    assert len(set(every)) == len(every) == 20
    assert {rrn[:2] for rrn in batches[0] + batches[2]} == {"01"}
    assert {rrn[:2] for rrn in batches[1] + batches[3]} == {"02"}
