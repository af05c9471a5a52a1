"""Conformance scenarios of the risk rules (terminal-link.md §11) with an
acquirer's default limits: a purchase over 30,000.00 and a card day over
100,000.00 are declined 61; pattern rules (round amounts, the same card on a
terminal again and again) only flag, so everything else is approved; a void
and a reversal give their amount back to the card's day.

They use their own card (the third active domestic card of the cards file,
else the last one) so the other scenarios' purchases do not count towards its
day, and they void every purchase they get approved: a second run on the same
day starts from the same counters.  Terminal 1 (index 0) runs them.
"""

from __future__ import annotations

from typing import Final

from terminals.cards import TerminalCard
from terminals.conformance import Scenario, ScenarioContext, ScenarioFailed, expect_approved
from terminals.conformance import expect_code as expect
from terminals.outcome import Event, Outcome
from terminals.session import TerminalSession
from terminals.state import PendingReversal
from terminals.txn import TxnKind

SINGLE_CAP_MINOR: Final = 3_000_000  # 30,000.00
DAY_CAP_MINOR: Final = 10_000_000  # 100,000.00
DROP_AMOUNT_MINOR: Final = 99404  # issuer_sim.rules.DROP_AMOUNT_MINOR: never answered
FIN: Final = 0


def risk_card(ctx: ScenarioContext) -> TerminalCard:
    domestic = [c for c in ctx.target.cards if c.active and c.card_org == "CUP"]
    if not domestic:
        raise ScenarioFailed("the cards file has no active domestic card")
    return domestic[2] if len(domestic) > 2 else domestic[-1]


class Purchases:
    """Purchases on the risk card, remembered so that ``void_all`` undoes them."""

    def __init__(self, ctx: ScenarioContext) -> None:
        self.session: TerminalSession = ctx.terminal(FIN)
        self.card = risk_card(ctx)
        self.approved: list[str] = []  # traces

    async def buy(self, amount_minor: int) -> Outcome:
        card = self.card
        blocking = await self.session.prepare()
        if blocking is not None:
            raise ScenarioFailed(f"could not prepare terminal: {blocking.event.value}")
        outcome = await self.session.transact(lambda m: m.purchase(card, amount_minor, card.pin))
        if outcome.approved:
            self.approved.append(outcome.trace)
        return outcome

    async def void(self, trace: str) -> None:
        voided = await self.session.transact(lambda m: m.purchase_void(trace))
        expect_approved(voided, f"void of trace {trace}")
        self.approved.remove(trace)

    async def void_all(self) -> None:
        for trace in list(self.approved):
            await self.void(trace)


async def single_cap(ctx: ScenarioContext) -> None:
    buys = Purchases(ctx)
    try:
        expect_approved(await buys.buy(SINGLE_CAP_MINOR), "purchase of exactly 30,000.00")
        expect(await buys.buy(SINGLE_CAP_MINOR + 1), "61", "purchase of 30,000.01")
    finally:
        await buys.void_all()


async def day_cap_and_void(ctx: ScenarioContext) -> None:
    buys = Purchases(ctx)
    try:
        for n in range(3):  # 90,000.00; the 2nd and 3rd on this terminal only flag
            expect_approved(await buys.buy(SINGLE_CAP_MINOR), f"purchase {n + 1} of 30,000.00")
        over = DAY_CAP_MINOR - 3 * SINGLE_CAP_MINOR + 1  # 10,000.01: the day would pass 100,000
        expect(await buys.buy(over), "61", "purchase past 100,000.00 in the card's day")
        await buys.void(buys.approved[0])  # gives 30,000.00 back to the day
        expect_approved(await buys.buy(over), "the same purchase after a void")
    finally:
        await buys.void_all()


async def day_cap_and_reversal(ctx: ScenarioContext) -> None:
    buys = Purchases(ctx)
    machine = buys.session.machine
    try:
        for n in range(3):
            expect_approved(await buys.buy(SINGLE_CAP_MINOR), f"purchase {n + 1} of 30,000.00")
        dropped = ctx.session(machine, timeout_s=ctx.target.drop_timeout_s)
        frame = machine.purchase(buys.card, DROP_AMOUNT_MINOR, buys.card.pin)
        outcome = await dropped.exchange(frame)
        if outcome.event is Event.RESPONSE and outcome.response_code != "98":
            raise ScenarioFailed(f"dropped purchase: expected 98, got {outcome.response_code}")
        if not machine.reversal_due:
            machine.state.pending_reversal = PendingReversal(
                TxnKind.PURCHASE.value, frame[2:], "98"
            )
        expect(await buys.session.exchange(machine.reversal()), "00", "reversal")
        # 90,000.00 + 9,999.99 fits only if the reversed 994.04 was given back.
        rest = DAY_CAP_MINOR - 3 * SINGLE_CAP_MINOR - 1
        expect_approved(await buys.buy(rest), "purchase up to the day's cap after a reversal")
    finally:
        await buys.void_all()


async def flags_approve(ctx: ScenarioContext) -> None:
    buys = Purchases(ctx)
    try:
        expect_approved(await buys.buy(1_000_000), "a round 10,000.00 (flagged, not declined)")
        expect_approved(await buys.buy(1_000_000), "the same card again at once (flagged)")
    finally:
        await buys.void_all()


RISK_CATALOGUE: Final[tuple[Scenario, ...]] = (
    Scenario("risk_single_cap", "30,000.00 approved, 30,000.01 declined 61", "risk", single_cap),
    Scenario(
        "risk_day_cap_void",
        "card day over 100,000.00 declined 61; a void gives its amount back",
        "risk",
        day_cap_and_void,
    ),
    Scenario(
        "risk_day_cap_reversal",
        "a reversed (dropped) purchase gives its amount back to the card's day",
        "risk",
        day_cap_and_reversal,
    ),
    Scenario(
        "risk_flags_approve",
        "round amounts and a card again within 5 minutes are flagged, not declined",
        "risk",
        flags_approve,
    ),
)
