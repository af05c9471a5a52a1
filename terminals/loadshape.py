"""Load shapes for the open loop: a constant rate, steps, or a ramp.

A shape is a tuple of segments, each with a start rate, an end rate (equal for
a step) and a length.  The open loop asks ``ticks_due(elapsed_s)``: how many
transactions should have started by then (the integral of the rate), so a
shape never drifts however the loop's sleeps fall.  Segments are also the unit
of reporting: a step-load report has one row per step, a ramp one row per
tenth of the ramp.

Invariants: every rate is finite and >= 0, every length finite and > 0 (a
constant rate may run unbounded: its one segment is infinite); the parsers
accept exactly ``RATExSECONDS[,RATExSECONDS...]`` and ``RATE1:RATE2:SECONDS``
with plain decimal numbers and raise ValueError naming the bad part.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

RAMP_SEGMENTS = 10  # rows of a ramp's report
MAX_STEPS = 100
_NUMBER = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True, slots=True)
class Segment:
    """The rate goes linearly from ``start_rate`` to ``end_rate`` over ``seconds``."""

    start_rate: float
    end_rate: float
    seconds: float

    @property
    def label(self) -> str:
        if self.start_rate == self.end_rate:
            return f"{self.start_rate:g}/s"
        return f"{self.start_rate:g}->{self.end_rate:g}/s"

    def rate_at(self, offset_s: float) -> float:
        if math.isinf(self.seconds):
            return self.start_rate
        return self.start_rate + (self.end_rate - self.start_rate) * offset_s / self.seconds

    def ticks_until(self, offset_s: float) -> float:
        """Transactions due in the first ``offset_s`` seconds of this segment."""
        return offset_s * (self.start_rate + self.rate_at(offset_s)) / 2


@dataclass(frozen=True, slots=True)
class LoadShape:
    segments: tuple[Segment, ...]

    @classmethod
    def constant(cls, rate: float, seconds: float | None = None) -> LoadShape:
        return cls((Segment(rate, rate, math.inf if seconds is None else seconds),))

    @property
    def duration_s(self) -> float:
        return sum(s.seconds for s in self.segments)

    @property
    def stepped(self) -> bool:
        """More than one segment: worth a row per segment in the report."""
        return len(self.segments) > 1

    def segment_at(self, elapsed_s: float) -> int:
        """Index of the segment running at ``elapsed_s`` (the last one after the end)."""
        for index, segment in enumerate(self.segments):
            if elapsed_s < segment.seconds:
                return index
            elapsed_s -= segment.seconds
        return len(self.segments) - 1

    def rate_at(self, elapsed_s: float) -> float:
        for segment in self.segments:
            if elapsed_s < segment.seconds:
                return segment.rate_at(elapsed_s)
            elapsed_s -= segment.seconds
        return 0.0

    def ticks_due(self, elapsed_s: float) -> float:
        """Transactions that should have started after ``elapsed_s`` seconds."""
        due = 0.0
        for segment in self.segments:
            if elapsed_s < segment.seconds:
                return due + segment.ticks_until(elapsed_s)
            due += segment.ticks_until(segment.seconds)
            elapsed_s -= segment.seconds
        return due

    def scaled(self, factor: float) -> LoadShape:
        """The same shape at ``factor`` times the rate (one of several fleet processes)."""
        return LoadShape(
            tuple(
                Segment(s.start_rate * factor, s.end_rate * factor, s.seconds)
                for s in self.segments
            )
        )


def _number(text: str, what: str, *, positive: bool) -> float:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{what} {text!r} is not a number")
    value = float(text)
    if positive and value <= 0:
        raise ValueError(f"{what} {text!r} must be greater than 0")
    return value


def parse_steps(text: str) -> LoadShape:
    """``500x30,1000x30`` -> 30 s at 500/s, then 30 s at 1,000/s."""
    items = [part.strip() for part in text.split(",")]
    if not 1 <= len(items) <= MAX_STEPS:
        raise ValueError(f"expected 1 to {MAX_STEPS} steps RATExSECONDS, got {len(items)}")
    segments = []
    for item in items:
        rate_text, sep, seconds_text = item.partition("x")
        if not sep:
            raise ValueError(f"step {item!r}: expected RATExSECONDS, e.g. 500x30")
        rate = _number(rate_text, f"step {item!r}: rate", positive=True)
        seconds = _number(seconds_text, f"step {item!r}: seconds", positive=True)
        segments.append(Segment(rate, rate, seconds))
    return LoadShape(tuple(segments))


def parse_ramp(text: str) -> LoadShape:
    """``100:1000:60`` -> from 100/s to 1,000/s over 60 s, reported in tenths."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"ramp {text!r}: expected RATE1:RATE2:SECONDS, e.g. 100:1000:60")
    start = _number(parts[0], "ramp start rate", positive=False)
    end = _number(parts[1], "ramp end rate", positive=False)
    seconds = _number(parts[2], "ramp seconds", positive=True)
    if start == end == 0:
        raise ValueError(f"ramp {text!r}: both rates are 0")
    piece_s = seconds / RAMP_SEGMENTS
    rates = [start + (end - start) * i / RAMP_SEGMENTS for i in range(RAMP_SEGMENTS + 1)]
    return LoadShape(tuple(Segment(rates[i], rates[i + 1], piece_s) for i in range(RAMP_SEGMENTS)))
