"""The fleet's latency histogram."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from terminals.latency import LatencyHistogram


def test_percentiles_of_a_uniform_sample_are_within_one_percent() -> None:
    hist = LatencyHistogram()
    for ms in range(1, 1001):
        hist.record(ms / 1000)
    assert abs(hist.percentile_s(0.5) - 0.5) <= 0.5 * 0.011
    assert abs(hist.percentile_s(0.99) - 0.99) <= 0.99 * 0.011
    assert hist.percentile_s(1.0) == hist.max_s == 1.0
    assert hist.count == 1000


@given(st.lists(st.floats(min_value=1e-5, max_value=100.0), min_size=1, max_size=200))
def test_percentile_never_exceeds_max_nor_undershoots_by_more_than_a_bucket(
    samples: list[float],
) -> None:
    hist = LatencyHistogram()
    for s in samples:
        hist.record(s)
    ordered = sorted(samples)
    for fraction in (0.5, 0.9, 0.999):
        exact = ordered[max(1, math.ceil(fraction * len(ordered))) - 1]
        got = hist.percentile_s(fraction)
        assert got <= hist.max_s
        assert got >= exact / 1.0101


def test_merge_adds_counts() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    a.record(0.01)
    b.record(0.02)
    a.merge(b)
    assert a.count == 2 and a.max_s == 0.02
