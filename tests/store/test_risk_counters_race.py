"""Race test on PostgreSQL: two store instances (two pools) on one schema run
thousands of concurrent holds of the default ruleset on 50 cards close to
their daily cap; no counter ends over any cap and every counter equals the
sum of the holds that were accepted."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import secrets
from collections.abc import AsyncIterator

import pytest

from posp.risk.counters import CounterAdd
from posp.risk.inputs import RiskInput
from posp.risk.ruleset import load_ruleset
from posp.store.postgres import PostgresStore
from posp.store.risk_counters import SqlRiskCounters
from tests.store.conftest import drop_schema

pytestmark = pytest.mark.postgres

CARDS = 50
HOLDS = 2_000
CAP_MINOR = 10_000_000  # the default card-day-amount
SEEDED_MINOR = 9_700_000  # each card starts 3,000.00 under its cap


@pytest.fixture
async def two_stores(pg_dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    schema = f"t_{secrets.token_hex(6)}"
    stores = [PostgresStore(pg_dsn, schema=schema, pool_size=4) for _ in range(2)]
    try:
        for store in stores:
            await store.open()
        yield stores[0], stores[1]
    finally:
        for store in stores:
            await store.close()
        await drop_schema(pg_dsn, schema)


def _purchase(rng: random.Random) -> RiskInput:
    card = rng.randrange(CARDS)
    return RiskInput(
        txn_type="purchase",
        amount_minor=rng.randrange(10_000, 60_001),
        card_hash=f"{card:064x}",
        bin="622588",
        terminal_id=f"1{rng.randrange(20):07d}",
        merchant_id=f"89829005411{card % 5:04d}",
        mcc="5411",
        local_time=dt.datetime(2026, 12, 3, 12, 0) + dt.timedelta(seconds=rng.randrange(3600)),
    )


async def test_racing_instances_never_pass_a_cap_and_counters_equal_accepted_holds(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    rules = load_ruleset()
    one, two = (SqlRiskCounters(store) for store in two_stores)
    rng = random.Random(20)
    purchases = [_purchase(rng) for _ in range(HOLDS)]
    holds = [rules.evaluate(p).hold for p in purchases]  # each alone fits its (empty) snapshot
    day_keys = sorted({h[0].key for h in holds})
    assert len(day_keys) == CARDS and all(h[0].max_amount_minor == CAP_MINOR for h in holds)
    await one.apply([CounterAdd(k, SEEDED_MINOR, 1, 0, 0, dt.date(2027, 1, 1)) for k in day_keys])

    results = await asyncio.gather(
        *((one if i % 2 else two).check_and_add(hold) for i, hold in enumerate(holds))
    )

    expected: dict[str, list[int]] = {k: [SEEDED_MINOR, 1] for k in day_keys}
    for hold, result in zip(holds, results, strict=True):
        if result.applied:
            for add in hold:
                total = expected.setdefault(add.key, [0, 0])
                total[0] += add.amount_minor
                total[1] += add.txn_count
    got = await two.snapshot(list(expected))
    assert {k: [v.amount_minor, v.txn_count] for k, v in got.items()} == expected
    assert all(got[k].amount_minor <= CAP_MINOR for k in day_keys)
    accepted = sum(r.applied for r in results)
    assert 0 < accepted < HOLDS  # the caps did refuse some, and not everything
    assert all(r.before for r in results if not r.applied)  # a refusal says what it saw
