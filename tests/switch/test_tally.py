"""posp.tally: plain-number instruments expose the same families as prometheus_client."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from posp.errors import HsmTimeout
from posp.metrics import SwitchMetrics, instrument_hsm
from posp.tally import TallyCounter, TallyHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def test_counter_exports_total_per_label_set() -> None:
    registry = CollectorRegistry()
    counter = TallyCounter("x_requests", "doc", ["mti", "code"], registry=registry)
    counter.inc(("0200", "00"))
    counter.inc(("0200", "00"), 2)
    counter.inc(("0200", "05"))
    assert registry.get_sample_value("x_requests_total", {"mti": "0200", "code": "00"}) == 3
    assert registry.get_sample_value("x_requests_total", {"mti": "0200", "code": "05"}) == 1
    assert counter.value(("0800", "00")) == 0


def test_duplicate_name_is_refused_like_prometheus_client() -> None:
    registry = CollectorRegistry()
    TallyCounter("x_requests", "doc", ["a"], registry=registry)
    with pytest.raises(ValueError):
        TallyCounter("x_requests", "doc", ["a"], registry=registry)


@given(st.lists(st.sampled_from([0.0, 0.0005, 0.001, 0.005, 0.01, 0.5, 1.0, 3.0]), max_size=30))
def test_histogram_matches_prometheus_client(values: list[float]) -> None:
    """Bucket edges are inclusive ("le") and counts cumulative, exactly as the library's."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tally = TallyHistogram("lat_seconds", "doc", ["kind"], BUCKETS, registry=ours)
    reference = Histogram("lat_seconds", "doc", ["kind"], buckets=BUCKETS, registry=theirs)
    tally.series(("a",))
    reference.labels("a")
    for value in values:
        tally.observe(("a",), value)
        reference.labels("a").observe(value)
    for le in ("0.001", "0.01", "0.1", "1.0", "+Inf"):
        labels = {"kind": "a", "le": le}
        expected = theirs.get_sample_value("lat_seconds_bucket", labels)
        assert ours.get_sample_value("lat_seconds_bucket", labels) == expected
    assert ours.get_sample_value("lat_seconds_count", {"kind": "a"}) == len(values)
    expected_sum = theirs.get_sample_value("lat_seconds_sum", {"kind": "a"})
    assert ours.get_sample_value("lat_seconds_sum", {"kind": "a"}) == pytest.approx(expected_sum)


def test_switch_metrics_export_request_and_latency_families() -> None:
    metrics = SwitchMetrics()
    metrics.observe_request("purchase", "00", 0.02)
    metrics.observe_request("purchase", "00", 0.2)
    in_flight = 7
    metrics.track_in_flight(lambda: in_flight)
    registry = metrics.registry
    labels = {"txn_type": "purchase", "response_code": "00"}
    assert registry.get_sample_value("posp_requests_total", labels) == 2
    bucket = {"txn_type": "purchase", "le": "0.025"}
    assert registry.get_sample_value("posp_request_seconds_bucket", bucket) == 1
    assert registry.get_sample_value("posp_in_flight") == 7
    assert b"posp_request_seconds_count" in generate_latest(registry)


class _SlowHsm:
    async def echo(self, data: str = "PING") -> str:
        await asyncio.sleep(0)
        return data

    async def diagnostics(self) -> None:
        raise HsmTimeout("no answer")


async def test_instrumented_hsm_times_calls_and_counts_errors() -> None:
    metrics = SwitchMetrics()
    hsm = instrument_hsm(_SlowHsm(), metrics)  # type: ignore[arg-type]
    assert await hsm.echo("X") == "X"
    with pytest.raises(HsmTimeout):
        await hsm.diagnostics()
    registry = metrics.registry
    assert registry.get_sample_value("posp_hsm_seconds_count", {"command": "echo"}) == 1
    assert registry.get_sample_value("posp_hsm_seconds_count", {"command": "diagnostics"}) == 1
    errors = {"command": "diagnostics", "error": "HsmTimeout"}
    assert registry.get_sample_value("posp_hsm_errors_total", errors) == 1
