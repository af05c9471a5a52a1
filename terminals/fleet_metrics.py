"""Prometheus exposition of a running fleet (``--metrics-port``).

A collector on the fleet's own registry reads the statistics at scrape time,
so the hot path records nothing twice.  Invariants: label sets are bounded —
``type`` (the mix's names and the auxiliary kinds), ``outcome`` (the six
classes) and ``code`` (two-character response codes); never a terminal id,
PAN or trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from terminals.fleet_stats import FleetStats
from terminals.series import SecondRow


class FleetCollector(Collector):
    """posp_fleet_* metrics from the live ``FleetStats`` and the last second."""

    def __init__(self, stats: FleetStats | None = None) -> None:
        self.stats = stats  # set once the load runs (the first second)
        self.last_row: SecondRow | None = None

    def collect(self) -> Iterator[Any]:
        stats = self.stats
        if stats is None:
            return
        requests = CounterMetricFamily(
            "posp_fleet_requests", "Load-phase exchanges by type and outcome",
            labels=["type", "outcome"],
        )  # fmt: skip
        for name, tally in sorted(stats.by_type.items()):
            for outcome, count in sorted(tally.outcomes.items()):
                requests.add_metric([name, outcome], count)
        yield requests
        codes = CounterMetricFamily(
            "posp_fleet_responses", "Load-phase answers by response code", labels=["code"]
        )
        for code, count in sorted(stats.total.codes.items()):
            codes.add_metric([code], count)
        yield codes
        yield CounterMetricFamily(
            "posp_fleet_ticks", "Open-loop transactions offered", value=stats.ticks
        )
        yield CounterMetricFamily(
            "posp_fleet_skipped_ticks", "Offered ticks that found no idle terminal",
            value=stats.skipped,
        )  # fmt: skip
        row = self.last_row
        if row is not None:
            latency = GaugeMetricFamily(
                "posp_fleet_latency_seconds",
                "Answered-exchange latency over the last whole second",
                labels=["quantile"],
            )
            for quantile, value_ms in (("0.5", row.p50_ms), ("0.9", row.p90_ms),
                                       ("0.99", row.p99_ms)):  # fmt: skip
                latency.add_metric([quantile], value_ms / 1000)
            yield latency
            if row.offered_per_s is not None:
                yield GaugeMetricFamily(
                    "posp_fleet_offered_rate", "The load shape's rate now (per second)",
                    value=row.offered_per_s,
                )  # fmt: skip


def serve_metrics(port: int, collector: FleetCollector) -> Callable[[], None]:
    """Serve ``collector`` on its own registry at ``port``; returns a stopper."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
