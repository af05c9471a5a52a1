"""Property: PostgreSQL's group commit of risk holds (``posp.store.pg_holds``)
decides and counts exactly as the Protocol's reference, ``InMemoryCounters``,
applying the holds one after another in the order they were submitted —
whatever the caps (amount, net, count, minimum gap), the shared keys and how
the concurrent requests fall into batches."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posp.risk.counters import CounterAdd, InMemoryCounters
from posp.risk.inputs import ZERO
from posp.store.postgres import PostgresStore
from posp.store.risk_counters import SqlRiskCounters
from tests.conftest import drop_pg_schema
from tests.store.samples import entry, hold_with_entry

pytestmark = pytest.mark.postgres

KEYS = ("a", "b", "c")
UNTIL = dt.date(2026, 12, 31)
SCHEMA = f"prop_pg_holds_{os.getpid()}"
_examples = itertools.count()
caps = st.one_of(st.none(), st.integers(0, 600))
#: One counter of a request's hold: key, amount, at_s, count, amount cap, count cap, gap.
Part = tuple[str, int, int, int, int | None, int | None, int | None]


@st.composite
def holds(draw: st.DrawFn) -> list[Part]:
    """One request's hold: (key, amount, at_s, ...caps) on distinct keys."""
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    return [
        (
            key,
            draw(st.integers(0, 300)),
            draw(st.integers(0, 2_000)),
            draw(st.integers(1, 1)),
            draw(caps),
            draw(st.one_of(st.none(), st.integers(0, 4))),
            draw(st.one_of(st.none(), st.integers(0, 900))),
        )
        for key in keys
    ]


@pytest.fixture(scope="module")
def schema_dsn(pg_dsn: str) -> Iterator[str]:
    yield pg_dsn
    drop_pg_schema(pg_dsn, SCHEMA)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(holds(), min_size=1, max_size=12))
def test_batched_holds_match_the_reference_in_submission_order(
    schema_dsn: str, requests: list[list[Part]]
) -> None:
    prefix = f"x{next(_examples)}|"

    def adds(request: list[Part]) -> tuple[CounterAdd, ...]:
        return tuple(
            CounterAdd(prefix + key, amount, count, 0, at_s, UNTIL, cap, None, max_count, gap)
            for key, amount, at_s, count, cap, max_count, gap in request
        )

    async def run() -> None:
        store = PostgresStore(schema_dsn, schema=SCHEMA)
        await store.open()
        try:
            jobs = [hold_with_entry(adds(r)) for r in requests]
            traces = [f"{n:06d}" for n in range(len(jobs))]
            await asyncio.gather(
                *(
                    store.insert_entry(entry(t, batch=prefix[:-1].rjust(6, "0")), then=j)
                    for t, j in zip(traces, jobs, strict=True)
                )
            )
            assert store._holds.batches == 1  # submitted together: one transaction
            reference = InMemoryCounters()
            for job in jobs:
                expected = reference.check_and_add_now(job.hold)
                assert job.result is not None
                assert job.result.applied == expected.applied
            keys = [prefix + k for k in KEYS]
            got = await SqlRiskCounters(store).snapshot(keys)
            # the batch creates every key's row, a refused hold's too: zeros = missing
            assert {k: v for k, v in got.items() if v != ZERO} == {
                k: v for k, v in reference.read_now(keys).items() if v != ZERO
            }
        finally:
            await store.close()

    asyncio.run(run())
