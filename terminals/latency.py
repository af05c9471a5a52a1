"""Latency histograms for the fleet: HdrHistogram (the ``hdrhistogram`` package).

Values are recorded in whole microseconds from 1 µs to one hour with three
significant figures, so a percentile is within 0.1 % of the true sample.
Invariants: a histogram's encoded form (``encode``) decodes to the same
counts, so histograms from several fleet processes merge exactly (``merge``)
and give the same percentiles as one histogram fed every sample; a latency
above an hour is clamped to the highest trackable value (counted, not lost).
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_FIGURES = 3
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


class LatencyHistogram:
    """Counts of latencies (seconds in, microsecond resolution inside)."""

    __slots__ = ("hdr",)

    def __init__(self, hdr: HdrHistogram | None = None) -> None:
        self.hdr = hdr or HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)

    def record(self, latency_s: float) -> None:
        value_us = int(latency_s * 1_000_000)
        self.hdr.record_value(min(max(value_us, LOWEST_US), HIGHEST_US))

    def merge(self, other: LatencyHistogram) -> None:
        if other.count:
            self.hdr.add(other.hdr)

    @property
    def count(self) -> int:
        return int(self.hdr.get_total_count())

    @property
    def max_s(self) -> float:
        return self.hdr.get_max_value() / 1e6 if self.count else 0.0

    @property
    def mean_s(self) -> float:
        return float(self.hdr.get_mean_value()) / 1e6 if self.count else 0.0

    def percentile_s(self, fraction: float) -> float:
        """Latency at or below which ``fraction`` (0..1) of the samples lie."""
        if self.count == 0:
            return 0.0
        value_us: int = self.hdr.get_value_at_percentile(fraction * 100.0)
        return min(value_us / 1e6, self.max_s)

    def summary_ms(self) -> dict[str, float]:
        """p50/p90/p99/p99.9, max and mean in milliseconds (all 0 when empty)."""
        if self.count == 0:
            return {**{name: 0.0 for name, _ in PERCENTILES}, "max": 0.0, "mean": 0.0}
        values = self.hdr.get_percentile_to_value_dict([q for _, q in PERCENTILES])
        max_ms = self.max_s * 1000
        summary = {name: round(min(values[q] / 1000, max_ms), 3) for name, q in PERCENTILES}
        return {**summary, "max": round(max_ms, 3), "mean": round(self.mean_s * 1000, 3)}

    def encode(self) -> str:
        """The HdrHistogram compressed, base64 form (what other HdrHistogram tools read)."""
        return str(self.hdr.encode().decode("ascii"))

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        """A histogram from ``encode``'s form; ValueError when it is not one."""
        try:
            return cls(HdrHistogram.decode(text.encode("ascii")))
        except Exception as exc:  # the decoder raises zlib, struct and its own errors
            raise ValueError(f"not an encoded HdrHistogram: {exc}") from exc
