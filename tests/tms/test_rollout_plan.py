"""Wave planning and the advance/halt decision, as pure functions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posp.store.tms import WaveTally
from posp.tms.keys import TmsUsageError
from posp.tms.rollout import Decision, decide, plan_waves

IDS = st.sets(st.text("0123456789ABCDEF", min_size=8, max_size=8), min_size=1, max_size=300)


@given(IDS, st.text(max_size=8))
def test_waves_are_deterministic_cumulative_and_sized_by_percentage(
    ids: set[str], seed: str
) -> None:
    waves = plan_waves(seed, ids, (1, 10, 100))
    assert waves == plan_waves(seed, sorted(ids, reverse=True), (1, 10, 100))
    assert set(waves) == ids
    for k, pct in enumerate((1, 10, 100)):
        reached = sum(1 for w in waves.values() if w <= k)
        assert reached == min(len(ids), max(1, math.ceil(pct * len(ids) / 100)))


def test_another_seed_picks_another_first_wave() -> None:
    ids = [f"T{n:07d}" for n in range(1000)]
    first = {t for t, w in plan_waves("1", ids, (1, 100)).items() if w == 0}
    other = {t for t, w in plan_waves("2", ids, (1, 100)).items() if w == 0}
    assert len(first) == 10 and first != other


@pytest.mark.parametrize("waves", [(), (10, 50), (50, 10, 100), (0, 100)])
def test_bad_waves_are_refused_naming_the_argument(waves: tuple[float, ...]) -> None:
    with pytest.raises(TmsUsageError) as info:
        plan_waves("s", ["T1"], waves)
    assert info.value.argument == "--waves"


@pytest.mark.parametrize(
    ("tally", "last", "decision"),
    [
        (WaveTally(100, 90, 5), False, Decision.WAIT),
        (WaveTally(100, 95, 5), False, Decision.ADVANCE),
        (WaveTally(100, 95, 5), True, Decision.DONE),
        (WaveTally(100, 10, 6), False, Decision.HALT),  # halts before the wave finishes
        (WaveTally(1, 0, 1), False, Decision.HALT),
    ],
)
def test_decide_waits_advances_finishes_or_halts(
    tally: WaveTally, last: bool, decision: Decision
) -> None:
    assert decide(tally, 5.0, last) is decision
