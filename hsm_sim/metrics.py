"""Prometheus metrics of the HSM simulator, against an injected registry.

Label sets are bounded: ``command`` is one of the known two-letter codes or
``other``; ``error`` is the two-character error code or ``??``.  Label children
are cached so the per-command cost is one dict lookup plus the observation.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Command codes reported under their own label; anything else is "other".
KNOWN_COMMANDS = frozenset(
    [
        "A0",
        "A2",
        "A4",
        "A6",
        "A8",
        "AE",
        "AG",
        "B2",
        "BA",
        "BU",
        "CA",
        "CC",
        "DC",
        "DG",
        "EC",
        "FA",
        "FK",
        "K0",
        "M0",
        "M2",
        "M6",
        "M8",
        "NC",
    ]
)
_KNOWN_BYTES = frozenset(code.encode("ascii") for code in KNOWN_COMMANDS)
_SECONDS_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)


class HsmSimMetrics:
    """Counters ``hsm_commands_total``, ``hsm_command_seconds``; gauge ``hsm_connections``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._commands = Counter(
            "hsm_commands",
            "Host commands answered, by command code and error code",
            ["command", "error"],
            registry=registry,
        )
        self._seconds = Histogram(
            "hsm_command_seconds",
            "Time spent executing a host command (excluding artificial latency)",
            ["command"],
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.connections = Gauge(
            "hsm_connections", "Host connections currently open", registry=registry
        )
        self._count_children: dict[tuple[bytes, bytes], Counter] = {}
        self._seconds_children: dict[bytes, Histogram] = {}

    def observe(self, command: bytes, error: bytes, seconds: float) -> None:
        """Count one answered command and its execution time."""
        if command not in _KNOWN_BYTES:
            command = b"other"  # keeps the caches as bounded as the label sets
        if len(error) != 2 or not error.isalnum():
            error = b"??"
        counter = self._count_children.get((command, error))
        if counter is None:
            counter = self._commands.labels(command.decode(), error.decode())
            self._count_children[(command, error)] = counter
        counter.inc()
        histogram = self._seconds_children.get(command)
        if histogram is None:
            histogram = self._seconds.labels(command.decode())
            self._seconds_children[command] = histogram
        histogram.observe(seconds)
