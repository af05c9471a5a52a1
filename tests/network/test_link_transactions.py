"""Issuer decisions seen through the link: PIN, balance, voids, refunds, pre-auth,
completion and reversals."""

from __future__ import annotations

from posp.iso8583 import Message
from posp.iso8583.fields import Balance, OriginalData
from posp.network.mapping import network_reversal
from tests.network.cards import PAN, PAN2, PIN, financial, purchase
from tests.network.conftest import Pair


def f90(original: Message) -> str:
    return OriginalData(
        original.mti,
        original.text(11),
        original.text(7),
        original.text(32),
        original.text(33),
    ).render()


async def test_wrong_pin_55_then_75_after_three_and_reset_by_correct(pair: Pair) -> None:
    """Wrong PINs answer 55, the third consecutive one 75; a correct PIN resets."""
    codes = [
        (await pair.link.send(purchase(100, pin="000000", pan=PAN2))).get(39) for _ in range(3)
    ]
    assert codes == ["55", "55", "75"]
    assert (await pair.link.send(purchase(100, pin=PIN, pan=PAN2))).get(39) == "00"
    assert (await pair.link.send(purchase(100, pin="111111", pan=PAN2))).get(39) == "55"


async def test_balance_inquiry_returns_f54(pair: Pair) -> None:
    """A balance inquiry answers F54: account 00, available 02, CNY, credit sign."""
    response = await pair.link.send(financial("0200", "310000", None, pin=PIN))
    assert response.get(39) == "00"
    balance = Balance.parse(str(response.get(54)))
    assert (balance.amount_type, balance.currency, balance.sign) == ("02", "156", "C")
    assert balance.amount_minor == await pair.issuer.balance(PAN)


async def test_void_restores_exactly_once(pair: Pair) -> None:
    """A purchase void credits the amount back; a second void answers 12."""
    before = await pair.issuer.balance(PAN)
    original = purchase(700, pin=PIN)
    assert (await pair.link.send(original)).get(39) == "00"
    void = financial("0200", "200000", 700, f90=f90(original))
    assert (await pair.link.send(void)).get(39) == "00"
    again = financial("0200", "200000", 700, f90=f90(original))
    assert (await pair.link.send(again)).get(39) == "12"
    assert await pair.issuer.balance(PAN) == before


async def test_refund_credits(pair: Pair) -> None:
    """A refund (0220) credits the card."""
    before = await pair.issuer.balance(PAN)
    response = await pair.link.send(financial("0220", "200000", 250))
    assert response.mti == "0230" and response.get(39) == "00"
    assert await pair.issuer.balance(PAN) == before + 250


async def test_preauth_completion_within_115_percent(pair: Pair) -> None:
    """Pre-auth holds; completion above 115% is 64; at 115% it debits and frees the hold."""
    before = await pair.issuer.balance(PAN)
    preauth = financial("0100", "030000", 10000, pin=PIN, f25="06")
    assert (await pair.link.send(preauth)).get(39) == "00"
    assert pair.issuer.ledger.accounts[PAN].held_minor == 10000
    too_much = financial("0200", "000000", 11501, f25="06", f90=f90(preauth))
    assert (await pair.link.send(too_much)).get(39) == "64"
    completion = financial("0200", "000000", 11500, f25="06", f90=f90(preauth))
    assert (await pair.link.send(completion)).get(39) == "00"
    assert pair.issuer.ledger.accounts[PAN].held_minor == 0
    assert await pair.issuer.balance(PAN) == before - 11500


async def test_preauth_void_releases_hold(pair: Pair) -> None:
    """A pre-auth void (0100/20) releases the hold once."""
    preauth = financial("0100", "030000", 5000, f25="06")
    assert (await pair.link.send(preauth)).get(39) == "00"
    void = financial("0100", "200000", 5000, f25="06", f90=f90(preauth))
    assert (await pair.link.send(void)).get(39) == "00"
    assert pair.issuer.ledger.accounts[PAN].held_minor == 0


async def test_reversal_undoes_exactly_once_even_when_repeated(pair: Pair) -> None:
    """0420 credits a purchase back once; repeats answer 00 and move no money."""
    before = await pair.issuer.balance(PAN)
    original = purchase(900, pin=PIN)
    assert (await pair.link.send(original)).get(39) == "00"
    for _ in range(3):
        response = await pair.link.send(network_reversal(original))
        assert response.mti == "0430" and response.get(39) == "00"
    assert await pair.issuer.balance(PAN) == before


async def test_reversal_of_unknown_original_answers_00(pair: Pair) -> None:
    """A 0420 for a request the network never saw is acknowledged and recorded."""
    ghost = purchase(100)
    ghost.fields.update({7: "0101000000", 11: "999999", 32: "48010000", 33: "48010000"})
    response = await pair.link.send(network_reversal(ghost))
    assert response.get(39) == "00"
    assert pair.issuer.ledger.reversed_unknown
