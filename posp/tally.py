"""Hot-path Prometheus instruments kept in plain Python numbers.

``prometheus_client``'s Counter and Histogram take a lock per increment and
check their state on every observation: about 1 µs per histogram observation
and 0.5 µs per counter increment, a dozen times per card transaction.  These
instruments count in plain ints and floats instead and turn them into metric
families only when Prometheus scrapes (a custom collector), so the exposition
is the same (``<name>_total``; ``<name>_bucket``/``_sum``/``_count``) while an
observation costs a dict lookup and a bisect.

Invariants:
* Updates happen on one thread (the event loop's); a scrape from the HTTP
  thread copies the numbers first, so it may miss the observation being made
  at that instant but never sees a bucket count above its ``_count``.
* Label values are the caller's business: closed sets only (the same rule as
  every other metric of the project).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]


class TallyCounter(Collector):
    """A labelled counter family: ``inc(labels)`` adds to a plain int."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.counts: dict[Labels, int] = {}
        if registry is not None:
            registry.register(self)

    def inc(self, labels: Labels, amount: int = 1) -> None:
        """Add ``amount`` to the series ``labels`` (one value per label name)."""
        counts = self.counts
        counts[labels] = counts.get(labels, 0) + amount

    def value(self, labels: Labels) -> int:
        return self.counts.get(labels, 0)

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for labels, count in list(self.counts.items()):
            family.add_metric(list(labels), count)
        yield family


class TallySeries:
    """One label set of a :class:`TallyHistogram`: bucket counts and the sum."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, as Prometheus' buckets are "le".
        self.counts[bisect_left(self._bounds, value)] += 1
        self.total += value


class TallyHistogram(Collector):
    """A labelled histogram family; ``series(labels)`` gives the (cached) series
    to observe into."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        if not bounds:
            raise ValueError("a histogram needs at least one finite bucket")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._bounds = bounds
        self._le = [floatToGoString(b) for b in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._series: dict[Labels, TallySeries] = {}
        if registry is not None:
            registry.register(self)

    def series(self, labels: Labels) -> TallySeries:
        found = self._series.get(labels)
        if found is None:
            found = self._series[labels] = TallySeries(self._bounds)
        return found

    def observe(self, labels: Labels, value: float) -> None:
        self.series(labels).observe(value)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for labels, series in list(self._series.items()):
            total = series.total
            cumulative, buckets = 0, []
            for le, count in zip(self._le, list(series.counts), strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(list(labels), buckets, total)
        yield family
