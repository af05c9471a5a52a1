"""The fleet's latency histogram (HdrHistogram): precision, merge, encoded form."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminals.latency import LatencyHistogram


def test_percentiles_of_a_uniform_sample_are_within_a_tenth_of_a_percent() -> None:
    hist = LatencyHistogram()
    for ms in range(1, 1001):
        hist.record(ms / 1000)
    assert abs(hist.percentile_s(0.5) - 0.5) <= 0.5 * 0.001
    assert abs(hist.percentile_s(0.99) - 0.99) <= 0.99 * 0.001
    assert hist.percentile_s(1.0) == pytest.approx(hist.max_s, rel=1e-3)
    assert hist.count == 1000


@settings(deadline=None, max_examples=50)
@given(st.lists(st.floats(min_value=1e-5, max_value=100.0), min_size=1, max_size=200))
def test_percentile_never_exceeds_max_nor_undershoots_by_more_than_the_precision(
    samples: list[float],
) -> None:
    hist = LatencyHistogram()
    for s in samples:
        hist.record(s)
    ordered = sorted(samples)
    for fraction in (0.5, 0.9, 0.999):
        # HdrHistogram's rank: the nearest whole count, at least one
        exact = ordered[max(1, math.floor(fraction * len(ordered) + 0.5)) - 1]
        got = hist.percentile_s(fraction)
        assert got <= hist.max_s
        assert got >= exact * 0.999 - 1e-6


@settings(deadline=None, max_examples=50)
@given(
    st.lists(st.floats(min_value=1e-6, max_value=60.0), max_size=100),
    st.lists(st.floats(min_value=1e-6, max_value=60.0), max_size=100),
)
def test_merging_encoded_halves_equals_one_histogram_of_every_sample(
    left: list[float], right: list[float]
) -> None:
    """Two processes' histograms, encoded and decoded, merge to exactly what one
    histogram fed all the samples reports."""
    whole, a, b = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for s in left:
        a.record(s)
        whole.record(s)
    for s in right:
        b.record(s)
        whole.record(s)
    merged = LatencyHistogram.decode(a.encode())
    merged.merge(LatencyHistogram.decode(b.encode()))
    assert merged.count == whole.count
    assert merged.summary_ms() == whole.summary_ms()


def test_a_latency_above_an_hour_is_clamped_not_lost() -> None:
    hist = LatencyHistogram()
    hist.record(7200.0)
    assert hist.count == 1 and hist.max_s == pytest.approx(3600.0, rel=1e-3)


def test_decoding_garbage_names_the_problem() -> None:
    with pytest.raises(ValueError, match="HdrHistogram"):
        LatencyHistogram.decode("not-a-histogram")
