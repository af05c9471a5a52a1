"""The conformance scenarios: what a switch must do, as runnable checks.

Terminal roles (see ``terminals.conformance``): index 0 financial scenarios,
1 settlement and batch upload, 2 sign-off / not signed in.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from posp.iso8583 import decode_terminal
from terminals.cards import TerminalCard
from terminals.conformance import (
    UNKNOWN_MERCHANT_ID,
    UNKNOWN_TERMINAL_ID,
    Scenario,
    ScenarioContext,
    ScenarioFailed,
    expect_approved,
    expect_code,
)
from terminals.machine import TerminalMachine
from terminals.outcome import Event, Outcome
from terminals.risk_scenarios import RISK_CATALOGUE
from terminals.session import TerminalSession
from terminals.state import PendingReversal, load_terminal, save_terminal
from terminals.tms_scenarios import TMS_CATALOGUE
from terminals.transfer_scenarios import TRANSFER_CATALOGUE
from terminals.txn import TxnKind

DROP_AMOUNT_MINOR = 99404  # issuer_sim.rules.DROP_AMOUNT_MINOR
FIN, SETTLE, SIGNOFF = 0, 1, 2


async def _ready(session: TerminalSession) -> None:
    blocking = await session.prepare()
    if blocking is not None:
        raise ScenarioFailed(f"could not prepare terminal: {_describe(blocking)}")


def _describe(outcome: Outcome) -> str:
    text = outcome.response_code or outcome.event.value
    return f"{outcome.kind.value} {text}" + (f" ({outcome.detail})" if outcome.detail else "")


def _trace(frame: bytes) -> str:
    return decode_terminal(frame[2:]).message.text(11)


async def sign_in_variant(variant: str, ctx: ScenarioContext) -> None:
    machine = ctx.machine(FIN)
    outcome = await ctx.session(machine).exchange(machine.sign_in(variant))
    expect_approved(outcome, f"sign-in {variant}")
    if variant == "004" and machine.state.tdk is None:
        raise ScenarioFailed("sign-in 004 delivered no TDK")


async def _purchase(ctx: ScenarioContext, pin: str | None, amount_minor: int = 1234) -> Outcome:
    session = ctx.terminal(FIN)
    await _ready(session)
    return await session.transact(lambda m: m.purchase(ctx.card, amount_minor, pin))


async def purchase_with_pin(ctx: ScenarioContext) -> None:
    expect_approved(await _purchase(ctx, ctx.card.pin), "purchase with PIN")


async def purchase_without_pin(ctx: ScenarioContext) -> None:
    expect_approved(await _purchase(ctx, None), "purchase without PIN")


async def wrong_pin(ctx: ScenarioContext) -> None:
    wrong = "0000" if ctx.card.pin != "0000" else "1111"
    expect_code(await _purchase(ctx, wrong), "55", "purchase with a wrong PIN")


async def bad_mac(ctx: ScenarioContext) -> None:
    session = ctx.terminal(FIN)
    await _ready(session)
    session.machine.corrupt_next_mac()
    outcome = await session.transact(lambda m: m.purchase(ctx.card, 1234))
    expect_code(outcome, "A0", "purchase with a wrong MAC")
    if outcome.message is not None and 64 in outcome.message:
        raise ScenarioFailed("the A0 answer carries F64")
    # The terminal reverses and signs in again; leave it clean for what follows.
    await _ready(session)


async def duplicate_trace(ctx: ScenarioContext) -> None:
    session = ctx.terminal(FIN)
    await _ready(session)
    expect_approved(await session.transact(lambda m: m.purchase(ctx.card, 1234)), "purchase")
    session.machine.state.last_trace -= 1  # the next request reuses the same F11
    outcome = await session.transact(lambda m: m.purchase(ctx.card, 1234))
    expect_code(outcome, "94", "purchase repeating the trace")


async def unknown_terminal(ctx: ScenarioContext) -> None:
    machine = ctx.stranger(terminal_id=UNKNOWN_TERMINAL_ID)
    outcome = await ctx.session(machine).exchange(machine.sign_in("003"))
    expect_code(outcome, "97", "sign-in of an unknown terminal")


async def wrong_merchant(ctx: ScenarioContext) -> None:
    session = ctx.terminal(FIN)
    await _ready(session)
    machine = session.machine
    original = machine.config
    machine.config = original.with_changes(merchant_id=UNKNOWN_MERCHANT_ID)
    try:
        outcome = await session.exchange(machine.purchase(ctx.card, 1234))
    finally:
        machine.config = original
    expect_code(outcome, "03", "purchase with another merchant id")


async def not_signed_in(ctx: ScenarioContext) -> None:
    session = ctx.terminal(SIGNOFF)
    await _ready(session)
    machine = session.machine
    expect_code(await session.exchange(machine.sign_off()), "00", "sign-off")
    machine.state.signed_in = True  # a terminal that believes it is still signed in
    outcome = await session.exchange(machine.purchase(ctx.card, 1234))
    expect_code(outcome, "77", "purchase after sign-off")
    if not outcome.needs_sign_in:
        raise ScenarioFailed("77 did not ask the terminal to sign in again")


async def void_and_double_void(ctx: ScenarioContext) -> None:
    session = ctx.terminal(FIN)
    await _ready(session)
    frame = session.machine.purchase(ctx.card, 2500)
    trace = _trace(frame)
    expect_approved(await session.exchange(frame), "purchase")
    expect_approved(await session.transact(lambda m: m.purchase_void(trace)), "void")
    again = await session.transact(lambda m: m.purchase_void(trace, allow_voided=True))
    expect_code(again, "12", "second void of the same purchase")


async def refund_over_original(ctx: ScenarioContext) -> None:
    session = ctx.terminal(FIN)
    await _ready(session)
    outcome = expect_approved(await _purchase(ctx, None, 3000), "purchase")
    message = outcome.message
    assert message is not None
    rrn, date = message.text(37), message.text(13)
    refund = await session.transact(lambda m: m.refund(ctx.card, rrn, date, 3001))
    expect_code(refund, "64", "refund above the original amount")


async def completion_over_115(ctx: ScenarioContext) -> None:
    session = ctx.terminal(FIN)
    await _ready(session)
    frame = session.machine.preauth(ctx.card, 10000)
    trace = _trace(frame)
    expect_approved(await session.exchange(frame), "pre-authorization")
    outcome = await session.transact(lambda m: m.completion(trace, 11501))
    expect_code(outcome, "64", "completion at 115.01 % of the pre-authorization")


async def reversal_after_dropped_response(ctx: ScenarioContext) -> None:
    machine = ctx.machine(FIN)
    session = ctx.session(machine, timeout_s=ctx.target.drop_timeout_s)
    await _ready(session)
    frame = machine.purchase(ctx.card, DROP_AMOUNT_MINOR)
    outcome = await session.exchange(frame)
    if outcome.event is Event.RESPONSE and outcome.response_code != "98":
        raise ScenarioFailed(
            f"dropped purchase: expected 98 or no answer, got {_describe(outcome)}"
        )
    if not machine.reversal_due:
        # The switch answered 98 itself; the terminal still reverses to be safe.
        machine.state.pending_reversal = PendingReversal(TxnKind.PURCHASE.value, frame[2:], "98")
    reversal = await ctx.terminal(FIN).exchange(machine.reversal())
    expect_code(reversal, "00", "reversal of the unanswered purchase")
    if reversal.kind is not TxnKind.REVERSAL or machine.reversal_due:
        raise ScenarioFailed("the reversal was not cleared by its 0410")


async def _drain_batch(session: TerminalSession) -> None:
    """Close whatever batch the switch holds for this terminal (result ignored)."""
    await _ready(session)
    outcome = await session.settle()
    if outcome.event is not Event.RESPONSE or session.machine.upload_due:
        raise ScenarioFailed(f"could not close the previous batch: {_describe(outcome)}")


async def _purchases(session: TerminalSession, ctx: ScenarioContext, count: int) -> None:
    card = ctx.card
    for i in range(count):
        outcome = await session.transact(functools.partial(_purchase_of, card, 1000 + i))
        expect_approved(outcome, f"purchase {i + 1}")


def _purchase_of(card: TerminalCard, amount_minor: int, machine: TerminalMachine) -> bytes:
    return machine.purchase(card, amount_minor)


async def settlement_balanced(ctx: ScenarioContext) -> None:
    session = ctx.terminal(SETTLE)
    await _drain_batch(session)
    await _purchases(session, ctx, 2)
    batch = session.machine.state.batch
    outcome = expect_approved(await session.settle(), "settlement")
    if outcome.balanced is not True:
        raise ScenarioFailed("settlement of matching totals was not answered balanced (1/1)")
    if session.machine.state.batch == batch:
        raise ScenarioFailed("batch upload end message was not accepted")


async def settlement_unbalanced(ctx: ScenarioContext) -> None:
    session = ctx.terminal(SETTLE)
    await _drain_batch(session)
    await _purchases(session, ctx, 2)
    journal = session.machine.state.journal
    journal.pop(next(iter(journal)))  # the terminal "lost" one approval
    outcome = expect_approved(await session.settle(), "settlement")
    if outcome.balanced is not False:
        raise ScenarioFailed("settlement of differing totals was not answered unbalanced (2)")


async def batch_upload_resumed(ctx: ScenarioContext) -> None:
    session = ctx.terminal(SETTLE)
    await _drain_batch(session)
    await _purchases(session, ctx, 10)
    machine = session.machine
    expect_approved(await session.exchange(machine.settlement()), "settlement")
    first = machine.batch_upload()
    assert first is not None
    expect_approved(await session.exchange(first), "first batch upload message")
    with tempfile.TemporaryDirectory() as tmp:  # power off, power on
        path = Path(tmp) / "terminal.json"
        save_terminal(path, machine.config, machine.state)
        restored = TerminalMachine(*load_terminal(path))
    ctx.machines[SETTLE] = restored
    batch = restored.state.batch
    outcome = await ctx.session(restored).settle()
    expect_approved(outcome, "resumed batch upload")
    if restored.state.batch == batch or restored.upload_due:
        raise ScenarioFailed("the resumed upload's end message was not accepted")


def _sign_in(variant: str) -> Scenario:
    return Scenario(
        f"sign_in_{variant}",
        f"sign-in 60.3={variant}; every check value in F62 verifies under the TMK",
        "sign-in",
        functools.partial(sign_in_variant, variant),
    )


CATALOGUE: tuple[Scenario, ...] = (
    _sign_in("001"),
    _sign_in("003"),
    _sign_in("004"),
    Scenario("purchase_pin", "purchase with a PIN is approved (00)", "purchase", purchase_with_pin),
    Scenario(
        "purchase_no_pin", "purchase without PIN is approved", "purchase", purchase_without_pin
    ),
    Scenario("wrong_pin", "a wrong PIN is declined 55", "pin-verify", wrong_pin),
    Scenario("bad_mac", "a request with a wrong MAC gets A0 without F64", "mac", bad_mac),
    Scenario(
        "duplicate_trace", "a repeated trace in the batch gets 94", "duplicate", duplicate_trace
    ),
    Scenario("unknown_terminal", "an unregistered terminal gets 97", "registry", unknown_terminal),
    Scenario(
        "wrong_merchant", "a merchant id not the terminal's gets 03", "registry", wrong_merchant
    ),
    Scenario("not_signed_in", "a purchase after sign-off gets 77", "sign-in", not_signed_in),
    Scenario("void_double_void", "void 00, second void 12", "void", void_and_double_void),
    Scenario(
        "refund_over_original", "refund above the original gets 64", "refund", refund_over_original
    ),
    Scenario(
        "completion_over_115",
        "completion above 115 % of the pre-auth gets 64",
        "preauth",
        completion_over_115,
    ),
    Scenario(
        "reversal_after_timeout",
        "amount 99404 is dropped upstream: 98 or timeout, then the reversal gets 00",
        "reversal",
        reversal_after_dropped_response,
    ),
    Scenario(
        "settlement_balanced",
        "matching totals: result 1, upload end 207 accepted",
        "settlement",
        settlement_balanced,
    ),
    Scenario(
        "settlement_unbalanced",
        "differing totals: result 2, upload end 202 accepted",
        "settlement",
        settlement_unbalanced,
    ),
    Scenario(
        "batch_upload_resumed",
        "upload interrupted after the first 0320 resumes after a restart and ends",
        "batch-upload",
        batch_upload_resumed,
    ),
    *TRANSFER_CATALOGUE,
    *RISK_CATALOGUE,
    *TMS_CATALOGUE,  # last: they change the switch's parameters and groups
)

# The chip cases live in terminals.chip_scenarios (they use this module's helpers).
from terminals.chip_scenarios import CHIP_SCENARIOS  # noqa: E402

CATALOGUE = (*CATALOGUE, *CHIP_SCENARIOS)
