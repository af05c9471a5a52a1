"""``posp.pipeline.risk.read_counters``: the current windows' counters come from
the store on every request; the closed windows' (a merchant's past days, a pair's
past months) are read once and reused for ``CLOSED_CACHE_S``, a missing one too;
and ``prepare`` names each key once, the closed ones among them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

import posp.risk
from posp.pipeline import risk as risk_step
from posp.pipeline.risk import RiskService, read_counters
from posp.risk.engine import Prepared
from posp.risk.inputs import CounterValue, RiskInput
from posp.risk.ruleset import load_ruleset


class Counters:
    def __init__(self, values: dict[str, CounterValue]) -> None:
        self.values = values
        self.asked: list[list[str]] = []

    async def snapshot(self, keys: Sequence[str]) -> dict[str, CounterValue]:
        self.asked.append(list(keys))
        return {k: self.values[k] for k in keys if k in self.values}


def service(counters: Counters) -> RiskService:
    return RiskService(cast(Any, None), cast(Any, counters), cast(Any, None), cast(Any, None), 180)


def value(amount: int) -> CounterValue:
    return CounterValue(amount, 1, 0, 0)


async def test_closed_windows_are_read_once_then_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    counters = Counters({"today": value(1), "yesterday": value(2), "today2": value(3)})
    svc = service(counters)
    prepared = Prepared(
        cast(Any, None), ("today", "yesterday", "before"), frozenset({"yesterday", "before"})
    )
    first = await read_counters(svc, prepared)
    counters.values["yesterday"] = value(99)  # a late change: not seen until the cache ages
    counters.values["today"] = value(5)
    second = await read_counters(svc, prepared)
    assert first == {"today": value(1), "yesterday": value(2)}
    assert second == {"today": value(5), "yesterday": value(2)}
    assert counters.asked == [["today", "yesterday", "before"], ["today"]]
    later = risk_step._clock() + risk_step.CLOSED_CACHE_S + 1
    monkeypatch.setattr(risk_step, "_clock", lambda: later)
    third = await read_counters(svc, prepared)
    assert third["yesterday"] == value(99)
    assert counters.asked[-1] == ["today", "yesterday", "before"]


def test_prepare_names_each_key_once_and_the_closed_windows() -> None:
    rules = load_ruleset(Path(posp.risk.__file__).parent / "default_ruleset.toml")
    inp = RiskInput(
        txn_type="purchase",
        amount_minor=1234,
        card_hash="ab" * 16,
        bin="622202",
        terminal_id="T0000001",
        merchant_id="898100000000001",
        mcc="5411",
        local_time=dt.datetime(2026, 12, 3, 13, 0),
    )
    prepared = rules.prepare(inp)
    assert len(prepared.keys) == len(set(prepared.keys))
    assert prepared.closed <= set(prepared.keys)
    assert "m|898100000000001|d|2026-12-03" in prepared.keys
    assert "m|898100000000001|d|2026-12-03" not in prepared.closed
    assert "m|898100000000001|d|2026-12-02" in prepared.closed
    assert f"ctm|{'ab' * 16}|T0000001|202611" in prepared.closed
    assert f"ctm|{'ab' * 16}|T0000001|202612" not in prepared.closed
