"""A void, and a refund, cut off by ``kill -9``, against real processes
(``posp serve``, ``issuer-sim --durable``), on SQLite and on PostgreSQL: the
switch dies while the void (or the refund) of an approved purchase is at the
issuer.  After the restart it must end undone at the issuer (the void by the
terminal's 0400 or the switch's 0420, the refund by the in-doubt sweeper's
0420), and the purchase must be whole again — refundable in full (the
reservation on it given back) — so that the card ends where a purchase and
one refund leave it: at its opening balance."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tests.faults.audit import connect_store_schema, read_issuer_books, wait_switch_settled
from tests.faults.driver import AMOUNT_BASE_MINOR
from tests.faults.procs import FaultStack
from tests.faults.scenario import start_run, until

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


async def journal(store_url: str) -> dict[str, tuple[str, int, int]]:
    """txn_type → (state, refunded_minor, reserved_minor) of the switch's entries."""
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
    return {str(t): (str(s), int(f), int(r)) for t, s, f, r in rows}


async def test_switch_killed_while_a_void_is_at_the_issuer_on_sqlite(stack: FaultStack) -> None:
    await void_cut_off_by_a_kill(stack)


async def test_switch_killed_while_a_void_is_at_the_issuer_on_postgresql(
    tmp_path: Path, stacks: list[FaultStack], pg_url: str
) -> None:
    stack = FaultStack(tmp_path, store_url=pg_url)
    stacks.append(stack)
    await void_cut_off_by_a_kill(stack)


async def test_switch_killed_while_a_refund_is_at_the_issuer_on_sqlite(
    stack: FaultStack,
) -> None:
    await refund_cut_off_by_a_kill(stack)


async def test_switch_killed_while_a_refund_is_at_the_issuer_on_postgresql(
    tmp_path: Path, stacks: list[FaultStack], pg_url: str
) -> None:
    stack = FaultStack(tmp_path, store_url=pg_url)
    stacks.append(stack)
    await refund_cut_off_by_a_kill(stack)


async def void_cut_off_by_a_kill(stack: FaultStack) -> None:
    run = await start_run(stack, 1)
    terminal, card = run.fleet.terminals[0], run.fleet.cards[0]
    opening = read_issuer_books(stack.issuer_db).balances[card.pan]
    bought = await terminal.purchase(0, card, PIN_AMOUNT_MINOR)
    assert bought.approved and bought.message is not None
    rrn, mmdd = bought.message.text(37), bought.message.text(13)

    stack.set_rules(latency_ms=3000)
    before = stack.received("0200")
    void = asyncio.create_task(terminal.session.transact(lambda m: m.purchase_void(bought.trace)))
    await until(lambda: stack.received("0200") > before, "issuer received the void")
    await asyncio.to_thread(stack.kill, "switch1")
    voided = await void
    assert not voided.approved and voided.reversal_queued  # the terminal will send its 0400
    stack.set_rules(latency_ms=0)
    await until(lambda: issuer_rows(stack, card.pan, PIN_AMOUNT_MINOR) >= 2, "void booked")
    await asyncio.to_thread(stack.start_switch, "switch1")

    # The terminal's next transaction sends the void's 0400 first; the refund of
    # the whole purchase is then approved: nothing of it is held by the void.
    refunded = await terminal.session.transact(
        lambda m: m.refund(card, rrn, mmdd, PIN_AMOUNT_MINOR)
    )
    assert refunded.response_code == "00", refunded
    assert not terminal.machine.reversal_due
    residue = await wait_switch_settled(run.store_url, timeout_s=60.0)
    assert residue.unresolved == 0 and residue.saf_rows == 0, residue

    entries = await journal(run.store_url)
    assert entries["purchase"][0] == "approved"
    assert entries["purchase"][1] == PIN_AMOUNT_MINOR  # refunded in full, once
    assert entries["purchase_void"][0] == "reversed" and entries["purchase_void"][2] == 0
    assert entries["refund"][0] == "approved"
    books = read_issuer_books(stack.issuer_db)
    assert books.balances[card.pan] == opening  # debited, voided, void undone, refunded
    await run.fleet.close()


async def refund_cut_off_by_a_kill(stack: FaultStack) -> None:
    run = await start_run(stack, 1)
    terminal, card = run.fleet.terminals[0], run.fleet.cards[0]
    opening = read_issuer_books(stack.issuer_db).balances[card.pan]
    bought = await terminal.purchase(0, card, PIN_AMOUNT_MINOR)
    assert bought.approved and bought.message is not None
    rrn, mmdd = bought.message.text(37), bought.message.text(13)

    stack.set_rules(latency_ms=3000)
    before = stack.received("0220")
    refund = asyncio.create_task(
        terminal.session.transact(lambda m: m.refund(card, rrn, mmdd, PIN_AMOUNT_MINOR))
    )
    await until(lambda: stack.received("0220") > before, "issuer received the refund")
    await asyncio.to_thread(stack.kill, "switch1")
    cut_off = await refund
    assert not cut_off.approved
    stack.set_rules(latency_ms=0)
    await until(lambda: issuer_rows(stack, card.pan, PIN_AMOUNT_MINOR) >= 2, "refund booked")
    await asyncio.to_thread(stack.start_switch, "switch1")

    # The restarted switch's sweeper finds the refund in doubt: reversed at the
    # issuer (one 0420), its reservation in the purchase given back.
    residue = await wait_switch_settled(run.store_url, timeout_s=60.0)
    assert residue.unresolved == 0 and residue.saf_rows == 0, residue
    entries = await journal(run.store_url)
    assert entries["refund"][0] == "timed_out" and entries["refund"][2] == 0, entries
    assert entries["purchase"][1] == 0  # nothing of it counted as refunded
    assert read_issuer_books(stack.issuer_db).balances[card.pan] == opening - PIN_AMOUNT_MINOR

    again = await terminal.session.transact(lambda m: m.refund(card, rrn, mmdd, PIN_AMOUNT_MINOR))
    assert again.response_code == "00", again
    entries = await journal(run.store_url)
    assert entries["purchase"][1] == PIN_AMOUNT_MINOR
    assert read_issuer_books(stack.issuer_db).balances[card.pan] == opening
    await run.fleet.close()
