"""The conformance catalogue's chip cases (terminal-link §8), observable from the
terminal: the card's own verdicts (ARPC, TC/AAC), the switch's codes (30, 45),
the reversal after a card decline, the script advice and the TC upload.

They use the lab chip card file's cards (``terminals.chipwallet``): the
conformance card must be one of them.  The demo issuer sends a script for an
approved chip purchase of 99720 (``issuer_sim.chipissuer.SCRIPT_AMOUNT_MINOR``).
"""

from __future__ import annotations

from collections.abc import Callable

from terminals.chipwallet import chip_for
from terminals.conformance import (
    Scenario,
    ScenarioContext,
    ScenarioFailed,
    expect_approved,
    expect_code,
)
from terminals.machine import TerminalMachine
from terminals.outcome import Outcome
from terminals.requests import CONTACTLESS, FALLBACK, IC, SWIPED_CHIP
from terminals.scenarios import FIN, SETTLE, _drain_batch, _ready
from terminals.session import TerminalSession

SCRIPT_AMOUNT_MINOR = 99720  # issuer_sim.chipissuer.SCRIPT_AMOUNT_MINOR
NO_PIN_LIMIT_MINOR = 5000


async def _chip_purchase(
    ctx: ScenarioContext, amount_minor: int = 1234, entry: str = IC, index: int = FIN
) -> tuple[TerminalSession, Outcome]:
    if chip_for(ctx.card.pan) is None:
        raise ScenarioFailed("the conformance card is not in the lab chip card file")
    session = ctx.terminal(index)
    await _ready(session)
    card = ctx.card
    outcome = await session.transact(lambda m: m.purchase(card, amount_minor, card.pin, entry))
    return session, outcome


async def chip_approved(ctx: ScenarioContext) -> None:
    _, outcome = await _chip_purchase(ctx)
    expect_approved(outcome, "chip purchase")
    if outcome.detail != "TC":
        raise ScenarioFailed(f"the card did not accept the issuer's ARPC ({outcome.detail})")


async def chip_bad_arqc(ctx: ScenarioContext) -> None:
    chip = chip_for(ctx.card.pan)
    if chip is None:
        raise ScenarioFailed("the conformance card is not in the lab chip card file")
    genuine, chip.imk_ac = chip.imk_ac, bytes(16)  # the card's ARQCs no longer verify
    try:
        _, outcome = await _chip_purchase(ctx)
    finally:
        chip.imk_ac = genuine
    expect_code(outcome, "05", "chip purchase with a bad ARQC")
    if outcome.message is not None and 55 in outcome.message:
        raise ScenarioFailed("a declined ARQC was answered with F55 (tag 91)")


async def chip_arpc_failure(ctx: ScenarioContext) -> None:
    session = ctx.terminal(FIN)
    await _ready(session)
    session.machine.chip_faults["arpc"] = True
    _, outcome = await _chip_purchase(ctx)
    if outcome.approved or not outcome.reversal_queued:
        raise ScenarioFailed("an approval whose ARPC failed was not turned into a reversal")
    pending = session.machine.state.pending_reversal
    if pending is None or pending.reason != "06":
        raise ScenarioFailed("the card decline's reversal does not carry reason 06")
    blocking = await session.prepare()
    if blocking is not None or session.machine.reversal_due:
        raise ScenarioFailed("the 06 reversal was not answered")


async def chip_replayed_atc(ctx: ScenarioContext) -> None:
    expect_approved((await _chip_purchase(ctx))[1], "first chip purchase")
    chip = chip_for(ctx.card.pan)
    assert chip is not None
    chip.atc -= 1  # the next ARQC reuses the ATC just accepted
    expect_code((await _chip_purchase(ctx))[1], "05", "chip purchase with a replayed ATC")


async def chip_missing_fallback_flag(ctx: ScenarioContext) -> None:
    _, outcome = await _chip_purchase(ctx, entry=SWIPED_CHIP)
    expect_code(outcome, "45", "swipe of a chip card without 60.5 = 2")


async def chip_fallback(ctx: ScenarioContext) -> None:
    expect_approved((await _chip_purchase(ctx, entry=FALLBACK))[1], "fallback swipe, 60.5 = 2")


async def chip_script_advice(ctx: ScenarioContext) -> None:
    session, outcome = await _chip_purchase(ctx, SCRIPT_AMOUNT_MINOR)
    expect_approved(outcome, "chip purchase answered with a script")
    if outcome.trace not in session.machine.state.script_advices:
        raise ScenarioFailed("the answer carried no issuer script the card could run")
    blocking = await session.prepare()  # sends the 0620
    if blocking is not None:
        expect_approved(blocking, "script result advice")
    if session.machine.state.script_advices:
        raise ScenarioFailed("the script result advice was not answered")


async def chip_tc_upload(ctx: ScenarioContext) -> None:
    session = ctx.terminal(SETTLE)
    await _drain_batch(session)
    for amount in (1100, 1200):
        _, outcome = await _chip_purchase(ctx, amount, index=SETTLE)
        expect_approved(outcome, "chip purchase")
    expect_approved(await session.settle(), "settlement with TC upload")
    if session.machine.state.tcs:
        raise ScenarioFailed("a TC upload was not answered 00")


async def contactless_pin_limit(ctx: ScenarioContext) -> None:
    session = ctx.terminal(FIN)
    await _ready(session)
    machine = session.machine
    machine.config = machine.config.with_changes(contactless_no_pin_limit_minor=NO_PIN_LIMIT_MINOR)
    card = ctx.card
    sent: dict[int, object] = {}

    def tap(amount_minor: int) -> Callable[[TerminalMachine], bytes]:
        def build(m: TerminalMachine) -> bytes:
            frame = m.purchase(card, amount_minor, card.pin, CONTACTLESS)
            assert m.in_flight is not None
            sent[amount_minor] = m.in_flight.message.get(52)
            return frame

        return build

    small = NO_PIN_LIMIT_MINOR - 1
    expect_approved(await session.transact(tap(small)), "contactless under the no-PIN limit")
    large = NO_PIN_LIMIT_MINOR + 1
    expect_approved(await session.transact(tap(large)), "contactless above the no-PIN limit")
    if sent[small] is not None or sent[large] is None:
        raise ScenarioFailed("contactless: PIN sent under the limit or missing above it")


CHIP_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "chip_approved",
        "chip purchase approved; the card verifies the ARPC (TC)",
        "chip",
        chip_approved,
    ),
    Scenario(
        "chip_bad_arqc",
        "an ARQC the issuer cannot verify is declined 05 without tag 91",
        "chip",
        chip_bad_arqc,
    ),
    Scenario(
        "chip_arpc_failure",
        "the card rejects the ARPC: AAC, reversal 06 answered",
        "chip",
        chip_arpc_failure,
    ),
    Scenario("chip_replayed_atc", "a replayed ATC is declined 05", "chip", chip_replayed_atc),
    Scenario(
        "chip_swiped_no_fallback",
        "a swiped chip card without 60.5 = 2 gets 45",
        "fallback",
        chip_missing_fallback_flag,
    ),
    Scenario("chip_fallback", "a fallback swipe (60.5 = 2) is approved", "fallback", chip_fallback),
    Scenario(
        "chip_script_advice",
        "issuer script run by the card; the 0620 advice gets 00",
        "chip",
        chip_script_advice,
    ),
    Scenario(
        "chip_tc_upload",
        "TCs uploaded after settlement (0320 203/205) get 00",
        "chip",
        chip_tc_upload,
    ),
    Scenario(
        "contactless_pin_limit",
        "contactless: no PIN under the limit, PIN above",
        "contactless",
        contactless_pin_limit,
    ),
)
