"""Counters of the TCP HSM transport and their Prometheus exposition.

A leaf of ``posp.hsm``: the connections bump plain integers on the hot path
(no ``prometheus_client`` call per request); :class:`StatsCollector` turns them
into metric families at scrape time.  Every family is present from the first
scrape, at 0 until something happens, so panels show 0 rather than "No data".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(slots=True)
class HsmClientStats:
    """Counters of one transport; read by tests, benchmarks and the collector."""

    calls: int = 0
    errors: int = 0  # replies carrying a non-zero error code (including verification 01)
    timeouts: int = 0
    unavailable: int = 0  # calls failed because no connection was up or it broke
    late_replies: int = 0
    unmatched_replies: int = 0
    reconnects: int = 0
    connect_failures: int = 0


#: (metric name without _total, help, HsmClientStats field) of every counter exported.
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("posp_hsm_calls", "HSM calls made", "calls"),
    ("posp_hsm_error_replies", "HSM replies with a non-zero error code", "errors"),
    ("posp_hsm_timeouts", "HSM calls that passed their deadline", "timeouts"),
    ("posp_hsm_unavailable", "HSM calls failed for lack of a connection", "unavailable"),
    ("posp_hsm_late_replies", "HSM replies that arrived after their deadline", "late_replies"),
    (
        "posp_hsm_unmatched_replies",
        "HSM replies whose header matched no call (never sent or already answered)",
        "unmatched_replies",
    ),
    ("posp_hsm_reconnects", "HSM connections re-established", "reconnects"),
)


class StatsCollector(Collector):
    """Exposes :class:`HsmClientStats` and two gauges read at scrape time."""

    def __init__(
        self,
        stats: HsmClientStats,
        connections_up: Callable[[], int],
        in_flight: Callable[[], int],
    ) -> None:
        self._stats = stats
        self._connections_up = connections_up
        self._in_flight = in_flight

    def collect(self) -> Iterator[Metric]:
        for name, doc, field in COUNTERS:
            yield CounterMetricFamily(name, doc, value=getattr(self._stats, field))
        yield GaugeMetricFamily(
            "posp_hsm_connections_up", "HSM connections up", value=self._connections_up()
        )
        yield GaugeMetricFamily(
            "posp_hsm_in_flight", "HSM calls awaiting a reply", value=self._in_flight()
        )
