"""Property: whatever the sequence of reservations (a refund's or a void's, made
with ``reserve_refunded`` by its own entry), releases (``release_reservation``,
repeated and with stale amounts) and state changes of the original, an
original's ``refunded_minor`` always equals the sum its entries still carry
(``reserved_minor``), never exceeds its amount and never goes below zero; a
reservation is refused once the original is no longer approved."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from posp.store.api import APPROVED, VOIDED, JournalEntry
from posp.store.sqlite import MEMORY, SqliteStore

AMOUNT = 1_000

step = st.one_of(
    st.tuples(st.just("reserve"), st.integers(1, 700)),
    st.tuples(st.just("release"), st.integers(0, 7)),  # the n-th reserving entry
    st.tuples(st.just("stale_release"), st.integers(0, 7)),
    st.tuples(st.just("void"), st.just(0)),
    st.tuples(st.just("unvoid"), st.just(0)),
)


def _entry(trace: int, **changes: object) -> JournalEntry:
    entry = JournalEntry("10000001", "898290054110001", "000001", f"{trace:06d}", "refund", "0220")
    for name, value in changes.items():
        setattr(entry, name, value)
    return entry


@settings(max_examples=120, deadline=None)
@given(st.lists(step, min_size=1, max_size=25))
def test_refunded_equals_what_the_entries_carry(steps: list[tuple[str, int]]) -> None:
    async def run() -> None:
        store = SqliteStore(MEMORY)
        await store.open()
        try:
            original = await store.insert_entry(
                _entry(1, txn_type="purchase", mti="0200", state=APPROVED, amount_minor=AMOUNT)
            )
            made: list[tuple[int, int]] = []  # (entry id, amount) of accepted reservations
            for n, (op, value) in enumerate(steps):
                if op == "reserve":
                    entry_id = await store.insert_entry(_entry(100 + n, amount_minor=value))
                    state = (await store.get_entry(original)).state  # type: ignore[union-attr]
                    total = sum(e.reserved_minor for e in await _carriers(store, made))
                    accepted = await store.reserve_refunded(original, value, AMOUNT, entry_id)
                    expected = state == APPROVED and total + value <= AMOUNT
                    assert accepted is expected
                    if accepted:
                        made.append((entry_id, value))
                elif op in ("release", "stale_release") and made:
                    entry_id, amount = made[value % len(made)]
                    carried = (await store.get_entry(entry_id)).reserved_minor  # type: ignore[union-attr]
                    asked = amount if op == "release" else amount + 1
                    released = await store.release_reservation(entry_id, asked)
                    assert released is (carried == asked and carried > 0)
                elif op == "void":
                    await store.transition(original, (APPROVED,), VOIDED)
                elif op == "unvoid":
                    await store.transition(original, (VOIDED,), APPROVED)
                after = await store.get_entry(original)
                assert after is not None
                carried_now = sum(e.reserved_minor for e in await _carriers(store, made))
                assert after.refunded_minor == carried_now
                assert 0 <= after.refunded_minor <= AMOUNT
        finally:
            await store.close()

    asyncio.run(run())


async def _carriers(store: SqliteStore, made: list[tuple[int, int]]) -> list[JournalEntry]:
    found = [await store.get_entry(entry_id) for entry_id, _ in made]
    return [e for e in found if e is not None]
