"""The one backoff helper: exponential ceilings with full jitter (issue 14)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posp.backoff import Backoff, ceiling_s, full_jitter_s


def test_ceilings_double_from_the_minimum_and_stop_at_the_maximum() -> None:
    assert [ceiling_s(n, 0.5, 5.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert ceiling_s(10_000, 0.5, 5.0) == 5.0  # no overflow for huge attempt counts


@given(
    attempts=st.integers(min_value=0, max_value=200),
    min_s=st.floats(min_value=0.001, max_value=10.0),
    extra_s=st.floats(min_value=0.0, max_value=100.0),
    seed=st.integers(),
)
def test_every_delay_lies_between_zero_and_its_ceiling(
    attempts: int, min_s: float, extra_s: float, seed: int
) -> None:
    max_s = min_s + extra_s
    delay_s = full_jitter_s(attempts, min_s, max_s, random.Random(seed))
    assert 0.0 <= delay_s <= ceiling_s(attempts, min_s, max_s) <= max_s


def test_delays_are_spread_not_synchronised() -> None:
    """Two connections losing the same peer do not retry at the same instant."""
    delays = {full_jitter_s(6, 0.05, 10.0, random.Random(seed)) for seed in range(50)}
    assert len(delays) == 50
    assert max(delays) - min(delays) > 1.0  # spread over the 3.2 s ceiling


def test_a_loop_backoff_grows_until_reset() -> None:
    backoff = Backoff(0.1, 1.0, rng=random.Random(7))
    for _ in range(5):
        backoff.next_s()
    assert backoff.attempts == 5
    backoff.reset()
    assert backoff.attempts == 0 and backoff.next_s() <= 0.1


@pytest.mark.parametrize(("min_s", "max_s"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_nonsense_bounds_are_refused(min_s: float, max_s: float) -> None:
    with pytest.raises(ValueError, match="min_s"):
        Backoff(min_s, max_s)
