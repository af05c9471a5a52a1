"""A void, and a refund, cut off by ``kill -9``, against real processes
(``posp serve``, ``issuer-sim --durable``), on SQLite and on PostgreSQL: the
switch dies while the void (or the refund) of an approved purchase is at the
issuer, which books it.  After the restart it must end undone at the issuer by
exactly one 0420 — the void's sent by the switch for the terminal's 0400 (sent
before the terminal's next transaction), the refund's by the in-doubt sweep of
the restarted switch — and the purchase must be whole again: refundable in
full (the reservation the void or refund held in it given back), so that the
card ends where a purchase and one refund leave it, at its opening balance."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from terminals.cards import TerminalCard
from terminals.machine import TerminalMachine
from terminals.outcome import Outcome
from tests.faults.audit import connect_store_schema, read_issuer_books, wait_switch_settled
from tests.faults.driver import AMOUNT_BASE_MINOR, AuditedTerminal, fleet_cards
from tests.faults.procs import FaultStack
from tests.faults.scenario import Run, start_run, until

PIN_AMOUNT_MINOR = AMOUNT_BASE_MINOR + 1  # odd amounts carry a PIN (driver)


def issuer_rows(stack: FaultStack, pan: str, amount_minor: int) -> int:
    """The issuer's committed transactions (any kind) for this card and amount."""
    with sqlite3.connect(f"file:{stack.issuer_db}?mode=ro", uri=True, timeout=5) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM txns WHERE pan = ? AND amount_minor = ?", (pan, amount_minor)
        ).fetchone()
    return int(row[0])


_ENTRIES = (
    "SELECT txn_type, state, refunded_minor, reserved_minor FROM journal"
    " WHERE txn_type IN ('purchase', 'purchase_void', 'refund') ORDER BY id"
)


async def journal(store_url: str) -> dict[str, list[tuple[str, int, int]]]:
    """txn_type → (state, refunded_minor, reserved_minor) of each of the switch's
    entries of that type, oldest first."""
    if store_url.startswith("sqlite:///"):
        path = store_url.removeprefix("sqlite:///")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            rows = [tuple(r) for r in conn.execute(_ENTRIES).fetchall()]
    else:
        conn = await connect_store_schema(store_url)
        try:
            rows = [tuple(r) for r in await conn.fetch(_ENTRIES)]
        finally:
            await conn.close()
    entries: dict[str, list[tuple[str, int, int]]] = {}
    for kind, state, refunded, reserved in rows:
        entries.setdefault(str(kind), []).append((str(state), int(refunded), int(reserved)))
    return entries


def reversals(stack: FaultStack) -> list[int]:
    """How many 0420s the issuer received for each original it got one for."""
    return sorted(int(n) for n in stack.control("/traffic")["reversals"].values())


@pytest.fixture(params=["sqlite", "postgresql"])
def kill_stack(request: pytest.FixtureRequest, tmp_path: Path) -> FaultStack:
    """One switch on SQLite, or on a fresh PostgreSQL schema (asked for before
    the stacks, so the schema is dropped after the processes have stopped)."""
    store_url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    stacks: list[FaultStack] = request.getfixturevalue("stacks")
    stack = FaultStack(tmp_path, store_url=store_url)
    stacks.append(stack)
    return stack


async def test_switch_killed_while_a_void_is_at_the_issuer(kill_stack: FaultStack) -> None:
    await void_cut_off_by_a_kill(kill_stack)


async def test_switch_killed_while_a_refund_is_at_the_issuer(kill_stack: FaultStack) -> None:
    await refund_cut_off_by_a_kill(kill_stack)


@dataclass
class CutOff:
    """A purchase approved, then a follow-up of it cut off at the issuer by a kill."""

    run: Run
    terminal: AuditedTerminal
    card: TerminalCard
    opening: int  # the card's balance before the purchase
    rrn: str  # the purchase's
    mmdd: str
    outcome: Outcome  # what the terminal saw of the follow-up


async def purchase_then_cut_off(
    stack: FaultStack, mti: str, follow_up: Callable[[TerminalMachine, Outcome], bytes]
) -> CutOff:
    """A PIN purchase approved; then ``follow_up`` (built from the purchase's
    outcome) held 3 s at the issuer, the switch killed once the issuer has it
    (its ``mti`` count), the issuer let to book it, the switch restarted."""
    run = await start_run(stack, 1)
    terminal, card = run.fleet.terminals[0], run.fleet.cards[0]
    opening = read_issuer_books(stack.issuer_db).balances[card.pan]
    bought = await terminal.purchase(0, card, PIN_AMOUNT_MINOR)
    assert bought.approved and bought.message is not None
    stack.set_rules(latency_ms=3000)
    before = stack.received(mti)
    sent = asyncio.create_task(terminal.session.transact(lambda m: follow_up(m, bought)))
    await until(lambda: stack.received(mti) > before, f"issuer received the {mti}")
    await asyncio.to_thread(stack.kill, "switch1")
    outcome = await sent
    assert not outcome.approved
    stack.set_rules(latency_ms=0)
    await until(lambda: issuer_rows(stack, card.pan, PIN_AMOUNT_MINOR) >= 2, f"{mti} booked")
    await asyncio.to_thread(stack.start_switch, "switch1")
    text = bought.message.text
    return CutOff(run, terminal, card, opening, text(37), text(13), outcome)


async def void_cut_off_by_a_kill(stack: FaultStack) -> None:
    cut = await purchase_then_cut_off(stack, "0200", lambda m, o: m.purchase_void(o.trace))
    run, terminal, card = cut.run, cut.terminal, cut.card
    assert cut.outcome.reversal_queued  # the terminal will send its 0400

    # The terminal's next transaction sends the void's 0400 first; the refund of
    # the whole purchase is then approved: nothing of it is held by the void.
    refunded = await terminal.session.transact(
        lambda m: m.refund(card, cut.rrn, cut.mmdd, PIN_AMOUNT_MINOR)
    )
    assert refunded.response_code == "00", refunded
    assert not terminal.machine.reversal_due
    residue = await wait_switch_settled(run.store_url, timeout_s=60.0)
    assert residue.unresolved == 0 and residue.saf_rows == 0, residue

    entries = await journal(run.store_url)
    assert entries["purchase"] == [("approved", PIN_AMOUNT_MINOR, 0)]  # refunded in full
    assert entries["purchase_void"] == [("reversed", 0, 0)]  # its reservation given back
    assert entries["refund"] == [("approved", 0, PIN_AMOUNT_MINOR)]  # the refund's share
    assert reversals(stack) == [1]  # one 0420, for the void
    books = read_issuer_books(stack.issuer_db)
    assert books.balances[card.pan] == cut.opening  # debited, voided, void undone, refunded
    await run.fleet.close()


async def refund_cut_off_by_a_kill(stack: FaultStack) -> None:
    def refund(machine: TerminalMachine, bought: Outcome) -> bytes:
        assert bought.message is not None
        text = bought.message.text
        return machine.refund(card, text(37), text(13), PIN_AMOUNT_MINOR)

    card = fleet_cards(stack.cards)[0]
    cut = await purchase_then_cut_off(stack, "0220", refund)
    run, terminal = cut.run, cut.terminal

    # The restarted switch's sweeper finds the refund in doubt: reversed at the
    # issuer (one 0420), its reservation in the purchase given back.
    residue = await wait_switch_settled(run.store_url, timeout_s=60.0)
    assert residue.unresolved == 0 and residue.saf_rows == 0, residue
    entries = await journal(run.store_url)
    assert entries["refund"] == [("timed_out", 0, 0)], entries  # reservation given back
    assert entries["purchase"] == [("approved", 0, 0)]  # nothing of it counted as refunded
    assert reversals(stack) == [1]  # one 0420, for the refund
    books = read_issuer_books(stack.issuer_db)
    assert books.balances[card.pan] == cut.opening - PIN_AMOUNT_MINOR

    again = await terminal.session.transact(
        lambda m: m.refund(card, cut.rrn, cut.mmdd, PIN_AMOUNT_MINOR)
    )
    assert again.response_code == "00", again
    entries = await journal(run.store_url)
    assert entries["purchase"] == [("approved", PIN_AMOUNT_MINOR, 0)]
    assert entries["refund"] == [("timed_out", 0, 0), ("approved", 0, PIN_AMOUNT_MINOR)]
    assert read_issuer_books(stack.issuer_db).balances[card.pan] == cut.opening
    await run.fleet.close()
