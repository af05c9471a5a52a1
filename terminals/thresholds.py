"""``--fail-on`` thresholds: conditions on a run's result that make it fail.

Syntax: comma-separated ``METRIC>LIMIT`` or ``METRIC<LIMIT``, e.g.
``error_rate>1%,p99>250ms,approval_rate<0.95``.  Metrics: ``error_rate`` and
``approval_rate`` (a fraction, or a percentage with ``%``), and the latency
percentiles of answered requests ``p50``, ``p90``, ``p99``, ``p99.9`` (in ms;
the ``ms`` suffix is optional).  A condition that holds is a breach.

Invariants: the parser accepts only plain decimal numbers and raises ValueError
naming the bad condition; a rate's limit is between 0 and 1; ``breaches``
reports every condition that holds, in the order given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RATE_METRICS = ("error_rate", "approval_rate")
LATENCY_METRICS = ("p50", "p90", "p99", "p99.9")
_CONDITION = re.compile(
    r"(?P<metric>[a-z_.0-9-]+)\s*(?P<op>[<>])\s*(?P<limit>\d+(\.\d+)?)\s*(?P<unit>%|ms)?"
)


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    above: bool  # ">" (fail when the value is above the limit) or "<"
    limit: float  # a fraction for rates, milliseconds for latencies

    def __str__(self) -> str:
        rate = self.metric in RATE_METRICS
        limit = f"{self.limit * 100:g}%" if rate else f"{self.limit:g} ms"
        return f"{self.metric} {'>' if self.above else '<'} {limit}"

    def holds(self, value: float) -> bool:
        return value > self.limit if self.above else value < self.limit


def _threshold(text: str) -> Threshold:
    match = _CONDITION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"condition {text.strip()!r}: expected METRIC>LIMIT or METRIC<LIMIT")
    metric = match["metric"].replace("-", "_")
    limit, unit = float(match["limit"]), match["unit"]
    if metric in RATE_METRICS:
        if unit == "ms":
            raise ValueError(f"condition {text.strip()!r}: {metric} is a rate, not a time")
        limit = limit / 100 if unit == "%" else limit
        if limit > 1:
            raise ValueError(f"condition {text.strip()!r}: a rate is at most 1 (100%)")
    elif metric in LATENCY_METRICS:
        if unit == "%":
            raise ValueError(f"condition {text.strip()!r}: {metric} is a time in ms")
    else:
        known = ", ".join(RATE_METRICS + LATENCY_METRICS)
        raise ValueError(f"condition {text.strip()!r}: unknown metric (known: {known})")
    return Threshold(metric, match["op"] == ">", limit)


def parse_fail_on(text: str) -> tuple[Threshold, ...]:
    """``error_rate>1%,p99>250`` -> thresholds; ValueError names the bad condition."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError("expected at least one condition, e.g. error_rate>1%")
    return tuple(_threshold(part) for part in parts)


def breaches(thresholds: Sequence[Threshold], values: Mapping[str, float]) -> list[str]:
    """A line per threshold that holds for ``values`` (metric name -> value)."""
    found = []
    for threshold in thresholds:
        value = values[threshold.metric]
        if threshold.holds(value):
            shown = f"{value:.2%}" if threshold.metric in RATE_METRICS else f"{value:g} ms"
            found.append(f"{threshold.metric} is {shown} (fail on {threshold})")
    return found
