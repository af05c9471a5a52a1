"""The fleet's option parsers: --steps, --ramp and --fail-on (property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminals.loadshape import RAMP_SEGMENTS, LoadShape, parse_ramp, parse_steps
from terminals.thresholds import breaches, parse_fail_on

rates = st.integers(min_value=1, max_value=100_000)
seconds = st.integers(min_value=1, max_value=3600)


@given(st.lists(st.tuples(rates, seconds), min_size=1, max_size=20))
def test_steps_parse_back_to_what_was_written(steps: list[tuple[int, int]]) -> None:
    shape = parse_steps(",".join(f"{r}x{s}" for r, s in steps))
    assert [(seg.start_rate, seg.end_rate, seg.seconds) for seg in shape.segments] == [
        (r, r, s) for r, s in steps
    ]
    assert shape.duration_s == sum(s for _, s in steps)
    assert shape.ticks_due(shape.duration_s) == pytest.approx(sum(r * s for r, s in steps))


@given(st.integers(0, 100_000), st.integers(0, 100_000), seconds)
def test_a_ramp_offers_the_integral_of_its_rate(start: int, end: int, length: int) -> None:
    if start == end == 0:
        with pytest.raises(ValueError, match="both rates are 0"):
            parse_ramp(f"{start}:{end}:{length}")
        return
    shape = parse_ramp(f"{start}:{end}:{length}")
    assert len(shape.segments) == RAMP_SEGMENTS
    assert shape.duration_s == pytest.approx(length)
    assert shape.ticks_due(length) == pytest.approx((start + end) / 2 * length)
    assert shape.rate_at(0) == start
    assert shape.rate_at(length * 0.999999) == pytest.approx(end, abs=1e-3 * max(start, end))


@given(st.text(max_size=30))
def test_shape_parsers_answer_any_text_with_a_shape_or_a_value_error(text: str) -> None:
    for parse in (parse_steps, parse_ramp):
        try:
            shape = parse(text)
        except ValueError:
            continue
        assert isinstance(shape, LoadShape) and shape.duration_s > 0


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("500x0", "seconds"),
        ("0x30", "rate"),
        ("500", "RATExSECONDS"),
        ("500x30,nanx10", "rate"),
        ("infx10", "rate"),
        ("-5x10", "rate"),
    ],
)
def test_bad_steps_name_the_bad_step(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_steps(text)


@given(
    st.sampled_from(["error_rate", "approval_rate", "p50", "p90", "p99", "p99.9"]),
    st.sampled_from([">", "<"]),
    st.integers(0, 100),
)
def test_fail_on_conditions_parse_back_to_what_was_written(
    metric: str, op: str, number: int
) -> None:
    unit = "%" if metric.endswith("rate") else "ms"
    (threshold,) = parse_fail_on(f"{metric}{op}{number}{unit}")
    limit = number / 100 if unit == "%" else number
    assert (threshold.metric, threshold.above, threshold.limit) == (metric, op == ">", limit)
    assert parse_fail_on(str(threshold).replace(" ", "")) == (threshold,)


@given(st.text(max_size=40))
def test_fail_on_answers_any_text_with_thresholds_or_a_value_error(text: str) -> None:
    try:
        thresholds = parse_fail_on(text)
    except ValueError:
        return
    assert thresholds


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("latency>5", "unknown metric"),
        ("error_rate>150%", "at most 1"),
        ("p99>5%", "time in ms"),
        ("error_rate>5ms", "not a time"),
        ("p99=5", "METRIC>LIMIT"),
        ("", "at least one"),
    ],
)
def test_bad_fail_on_conditions_are_named(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_fail_on(text)


def test_breaches_list_every_condition_that_holds_and_only_those() -> None:
    thresholds = parse_fail_on("error_rate>1%,p99>250ms,approval_rate<0.9")
    values = {"error_rate": 0.05, "approval_rate": 0.95, "p99": 300.0}
    found = breaches(thresholds, values)
    assert len(found) == 2
    assert found[0].startswith("error_rate is 5.00%") and found[1].startswith("p99 is 300 ms")
