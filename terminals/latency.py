"""A cheap log-bucket latency histogram (HDR-like, ~1 % relative precision).

Recording is one ``math.log`` and one list increment, so the fleet can record
every exchange without becoming the bottleneck.  Invariant: a percentile is
reported as the upper edge of its bucket, never below the true value by more
than the bucket width (1 %); ``max_s`` is exact.
"""

from __future__ import annotations

import math

_GROWTH = 1.01
_SCALE = 1.0 / math.log(_GROWTH)
_MIN_S = 1e-6  # 1 microsecond: bucket 0 holds everything at or below it
_BUCKETS = int(math.log(3600.0 / _MIN_S) * _SCALE) + 2  # up to an hour


class LatencyHistogram:
    """Counts of latencies in geometrically growing buckets."""

    __slots__ = ("count", "counts", "max_s", "total_s")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def record(self, latency_s: float) -> None:
        if latency_s <= _MIN_S:
            index = 0
        else:
            index = min(int(math.log(latency_s / _MIN_S) * _SCALE) + 1, _BUCKETS - 1)
        self.counts[index] += 1
        self.count += 1
        self.total_s += latency_s
        if latency_s > self.max_s:
            self.max_s = latency_s

    def merge(self, other: LatencyHistogram) -> None:
        for i, n in enumerate(other.counts):
            if n:
                self.counts[i] += n
        self.count += other.count
        self.total_s += other.total_s
        self.max_s = max(self.max_s, other.max_s)

    def percentile_s(self, fraction: float) -> float:
        """Latency at or below which ``fraction`` (0..1) of the samples lie."""
        if self.count == 0:
            return 0.0
        target = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= target:
                return min(_MIN_S * _GROWTH**index, self.max_s)
        return self.max_s

    @property
    def mean_s(self) -> float:
        return self.total_s / self.count if self.count else 0.0
