"""The per-second series of a fleet run (``--series FILE``, CSV) and its rows.

One row per whole second of the load phase, from the window tally the fleet
swaps out every second: what was offered, what started, how each exchange
ended and the latency percentiles of that second's answered exchanges (not
cumulative).  Invariants: a row's outcome counts add up to its ``requests``;
the file is flushed after every row, so a run stopped by a signal or a crash
keeps every whole second written so far.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO

from terminals.fleet_stats import Tally
from terminals.outcome import OutcomeClass


@dataclass(frozen=True, slots=True)
class SecondRow:
    """What happened in one second of the load phase."""

    second: int  # 1 = the first second of the load
    step: int | None  # index of the load shape's segment, None for a constant load
    offered_per_s: float | None  # the shape's rate at the end of the second; None closed loop
    ticks: int  # open loop: transactions offered this second
    skipped: int  # of those, found no idle terminal
    requests: int
    approved: int
    declined: int
    timeout: int
    connection_error: int
    mac_failure: int
    protocol_error: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(
        cls,
        second: int,
        window: Tally,
        *,
        step: int | None,
        offered_per_s: float | None,
        ticks: int,
        skipped: int,
    ) -> SecondRow:
        latency = window.latency.summary_ms()
        counts = {c.value: window.outcomes[c.value] for c in OutcomeClass}
        return cls(
            second=second,
            step=step,
            offered_per_s=None if offered_per_s is None else round(offered_per_s, 1),
            ticks=ticks,
            skipped=skipped,
            requests=window.requests,
            **counts,
            p50_ms=latency["p50"],
            p90_ms=latency["p90"],
            p99_ms=latency["p99"],
            max_ms=latency["max"],
        )


COLUMNS = tuple(f.name for f in fields(SecondRow))


class SeriesWriter:
    """Writes ``SecondRow``s to a CSV file with a header line."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
        self._writer.writeheader()
        self._file.flush()

    def write(self, row: SecondRow) -> None:
        values = {k: ("" if v is None else v) for k, v in asdict(row).items()}
        self._writer.writerow(values)
        self._file.flush()

    def close(self) -> None:
        self._file.close()
