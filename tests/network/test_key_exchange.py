"""Zone key exchange: network-initiated under load, switch-requested, grace period."""

from __future__ import annotations

import asyncio

from posp.iso8583 import Message, NetworkFrame, NetworkHeader, decode_network, encode_network
from posp.lab.zone_keys import TEST_ZPK_LMK
from posp.network.keyring import ZoneKey
from posp.network.zone import KEY_KIND_ZAK, KEY_KIND_ZPK, mac_message
from tests.network.cards import PAN, PIN, pin_block, purchase
from tests.network.conftest import Pair, metric


async def switch_style_purchase(pair: Pair, amount_minor: int) -> Message:
    """Translate the PIN to the link's *current* ZPK (CC), as the switch does, then send."""
    request = purchase(amount_minor)
    translated = await pair.switch_hsm.translate_pin_zpk_to_zpk(
        TEST_ZPK_LMK, pair.link.zpk_lmk, pin_block(PIN, PAN).hex().upper(), PAN[-13:-1]
    )
    request[52] = bytes.fromhex(translated.pin_block)
    request[53] = "2600000000000000"
    return await pair.link.send(request)


async def test_network_initiated_exchange_under_load_fails_nothing(pair: Pair) -> None:
    """200 concurrent PIN purchases while the network rotates ZPK and ZAK: all approved,
    and both sides end on the same new keys."""
    old_zpk, old_zak = pair.link.zpk_lmk, pair.link.zak_lmk

    async def rotate() -> list[bool]:
        await asyncio.sleep(0.01)
        return [
            await pair.issuer.initiate_key_exchange(KEY_KIND_ZPK),
            await pair.issuer.initiate_key_exchange(KEY_KIND_ZAK),
        ]

    results = await asyncio.gather(
        rotate(), *(switch_style_purchase(pair, 100 + i) for i in range(200))
    )
    assert results[0] == [True, True]
    codes = [r.get(39) for r in results[1:]]  # type: ignore[union-attr]
    assert codes == ["00"] * 200
    assert pair.link.zpk_lmk != old_zpk and pair.link.zak_lmk != old_zak
    assert pair.issuer.zpk.current == pair.link.zpk_lmk
    assert pair.issuer.zak.current == pair.link.zak_lmk
    assert (
        metric(
            pair.registry,
            "posp_network_key_exchanges_total",
            key="zak",
            initiator="network",
            result="ok",
        )
        == 1
    )
    after = await switch_style_purchase(pair, 1)
    assert after.get(39) == "00"


async def test_switch_requested_keys_are_installed_and_used(pair: Pair) -> None:
    """0800/101 without F48: the network returns a key under the ZMK; the link imports it
    and further traffic (PIN and MAC) works with the new keys."""
    old_zpk, old_zak = pair.link.zpk_lmk, pair.link.zak_lmk
    assert await pair.link.request_key(KEY_KIND_ZPK)
    assert await pair.link.request_key(KEY_KIND_ZAK)
    assert (pair.link.zpk_lmk, pair.link.zak_lmk) != (old_zpk, old_zak)
    for _ in range(3):
        assert (await switch_style_purchase(pair, 10)).get(39) == "00"
    assert pair.issuer.zpk.current == pair.link.zpk_lmk
    assert pair.issuer.zak.current == pair.link.zak_lmk


def test_previous_key_valid_only_during_grace() -> None:
    """After install the old key is a candidate until the grace period ends."""
    now = [100.0]
    ring = ZoneKey("OLD", 60.0, clock=lambda: now[0])
    ring.install("NEW")
    assert ring.candidates() == ["NEW", "OLD"]
    now[0] = 161.0
    assert ring.candidates() == ["NEW"]


def test_offered_key_accepted_before_promotion() -> None:
    """An offered key verifies but is not used until promoted."""
    ring = ZoneKey("OLD", 60.0)
    ring.offer("NEW")
    assert ring.current == "OLD" and "NEW" in ring.candidates()
    assert ring.promote() and ring.current == "NEW" and not ring.promote()


def _as_received(request: Message) -> NetworkFrame:
    """``request`` as the link gets it off the wire (with its received field texts)."""
    return decode_network(encode_network(NetworkFrame(NetworkHeader("NET", "ACQ"), request)))


async def test_bad_key_exchange_answers_30_and_keeps_keys(pair: Pair) -> None:
    """A MAC'd network 0800/101 with a malformed F48 answers 30; without a valid MAC A0;
    either way the link keeps its ZPK."""
    before = pair.link.zpk_lmk
    request = Message("0800", {70: "101", 53: "1000000000000000", 48: "XYZ", 11: "000001"})
    assert await pair.link._accept_key(_as_received(request)) == "A0"
    await mac_message(pair.switch_hsm, pair.link.zak_lmk, request)
    assert await pair.link._accept_key(_as_received(request)) == "30"
    assert pair.link.zpk_lmk == before
