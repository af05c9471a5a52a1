"""Prometheus metrics of the network link, registered on an injected registry.

Label sets are bounded: MTIs and two-character response codes (plus ``timeout`` and
``unavailable``), key kinds, results.  Never a PAN, terminal id or trace.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from posp.tally import TallyCounter, TallyHistogram

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LinkMetrics:
    """The link's instruments; one instance per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.link_up = Gauge(
            "posp_network_link_up", "1 when at least one connection is signed on", registry=registry
        )
        self.connections_signed_on = Gauge(
            "posp_network_connections_signed_on", "connections signed on", registry=registry
        )
        # Per-request instruments are plain-number tallies (posp.tally): cheap to update.
        self.requests = TallyCounter(
            "posp_network_requests",
            "requests sent to the network by MTI and response code",
            ["mti", "response_code"],
            registry=registry,
        )
        self.unmatched = Counter(
            "posp_network_unmatched_responses",
            "responses that matched no pending request",
            registry=registry,
        )
        self.bad_frames = Counter(
            "posp_network_bad_frames",
            "frames from the network that did not decode",
            registry=registry,
        )
        self.mac_failures = Counter(
            "posp_network_mac_failures",
            "network messages whose MAC did not verify",
            registry=registry,
        )
        self.latency = TallyHistogram(
            "posp_network_latency_seconds",
            "request to matched response",
            [],
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        ).series(())
        self.key_exchanges = Counter(
            "posp_network_key_exchanges",
            "zone key exchanges by key, initiator and result",
            ["key", "initiator", "result"],
            registry=registry,
        )
        self.reconnects = Counter(
            "posp_network_reconnects", "connection attempts after a loss", registry=registry
        )
        self.saf_depth = Gauge(
            "posp_network_saf_depth", "reversals waiting in store-and-forward", registry=registry
        )
