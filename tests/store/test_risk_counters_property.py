"""Property: the SQLite store's check-and-add (conditional upserts in one writer
job, ``posp.store.risk_counters.sqlite_check_and_add``) decides and counts
exactly as the Protocol's reference, ``InMemoryCounters`` (``CounterAdd.holds_on``
on the values before), whatever the sequence of capped holds, uncapped releases
and refunds on a few shared keys; a refused hold changes nothing."""

from __future__ import annotations

import asyncio
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from posp.risk.counters import CounterAdd, InMemoryCounters
from posp.store.risk_counters import SqlRiskCounters
from posp.store.sqlite import MEMORY, SqliteStore

KEYS = ("a", "b", "c")
UNTIL = dt.date(2026, 12, 31)
caps = st.one_of(st.none(), st.integers(0, 600))


@st.composite
def adds(draw: st.DrawFn) -> tuple[bool, list[CounterAdd]]:
    """(capped, adds on distinct keys): a hold with caps, or an uncapped change."""
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    capped = draw(st.booleans())
    out = []
    for key in keys:
        count = draw(st.integers(-1, 2)) if not capped else draw(st.integers(0, 2))
        add = CounterAdd(
            key,
            draw(st.integers(-200, 300)),
            count,
            draw(st.integers(0, 100)) if not capped else 0,
            draw(st.integers(0, 2_000)),
            UNTIL,
        )
        if capped:
            add = add._replace(
                max_amount_minor=draw(caps),
                max_net_minor=draw(caps),
                max_count=draw(st.one_of(st.none(), st.integers(0, 4))),
                min_gap_s=draw(st.one_of(st.none(), st.integers(0, 900))),
            )
        out.append(add)
    return capped, out


@settings(max_examples=150, deadline=None)
@given(st.lists(adds(), min_size=1, max_size=12))
def test_sqlite_check_and_add_matches_the_reference(
    steps: list[tuple[bool, list[CounterAdd]]],
) -> None:
    async def run() -> None:
        store = SqliteStore(MEMORY)
        await store.open()
        try:
            sql, reference = SqlRiskCounters(store), InMemoryCounters()
            for capped, step in steps:
                if capped:
                    expected = reference.check_and_add_now(step)
                    got = await sql.check_and_add(step)
                    assert got.applied == expected.applied
                    if not got.applied:
                        assert got.before == expected.before
                else:
                    reference.apply_now(step)
                    await sql.apply(step)
                assert await sql.snapshot(list(KEYS)) == reference.read_now(KEYS)
        finally:
            await store.close()

    asyncio.run(run())
