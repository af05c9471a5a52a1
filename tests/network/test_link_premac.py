"""NetworkLink.premac: a request's MAC computed ahead is reused only when the
request finally sent has the same MAB under the same ZAK."""

from __future__ import annotations

import dataclasses

from tests.network.cards import PAN, PIN, purchase
from tests.network.conftest import Pair


async def test_a_premac_is_reused_for_the_same_mab_with_fields_outside_it_added(
    pair: Pair,
) -> None:
    """MACed before the PIN block and RRN were known (neither is in the MAB): the
    issuer verifies the reused MAC and approves; the debit happens once."""
    before = await pair.issuer.balance(PAN)
    full = purchase(2345, pin=PIN)
    early_request = purchase(2345, pin=PIN)
    for n in (52, 53, 26, 37):
        early_request.fields.pop(n, None)
    early = await pair.link.premac(early_request)
    used = pair.link.early_macs_used
    response = await pair.link.send(full, early=early)
    assert response.get(39) == "00"
    assert pair.link.early_macs_used == used + 1
    assert (full.get(11), full.get(7)) == (early_request.get(11), early_request.get(7))
    assert await pair.issuer.balance(PAN) == before - 2345


async def test_a_premac_over_another_mab_is_not_used(pair: Pair) -> None:
    """The amount changed after the early MAC: the link MACs again (a reused MAC
    would fail at the issuer)."""
    before = await pair.issuer.balance(PAN)
    early = await pair.link.premac(purchase(1000, pin=PIN))
    used = pair.link.early_macs_used
    response = await pair.link.send(purchase(1001, pin=PIN), early=early)
    assert response.get(39) == "00" and pair.link.early_macs_used == used
    assert await pair.issuer.balance(PAN) == before - 1001


async def test_a_premac_under_a_zak_no_longer_current_is_not_used(pair: Pair) -> None:
    early = await pair.link.premac(purchase(1500, pin=PIN))
    early = dataclasses.replace(early, zak="U" + "0" * 32)  # as if the ZAK rotated since
    used = pair.link.early_macs_used
    response = await pair.link.send(purchase(1500, pin=PIN), early=early)
    assert response.get(39) == "00" and pair.link.early_macs_used == used


async def test_an_early_request_changed_after_its_premac_lends_no_stale_text(pair: Pair) -> None:
    """The link keeps its own copy of the request it MACed early: a caller that
    changes that request afterwards (here its amount, to the amount finally sent)
    cannot make the sent request take a text encoded from the old value, so the
    network sees the new amount, MACed again."""
    before = await pair.issuer.balance(PAN)
    early_request = purchase(1000, pin=PIN)
    early = await pair.link.premac(early_request)
    early_request[4] = f"{1001:012d}"
    used = pair.link.early_macs_used
    response = await pair.link.send(purchase(1001, pin=PIN), early=early)
    assert response.get(39) == "00" and pair.link.early_macs_used == used
    assert await pair.issuer.balance(PAN) == before - 1001
