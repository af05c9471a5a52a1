"""CPU and memory of a running process, read from Linux ``/proc`` (no psutil):
what the fleet benchmarks report per process (fleet, switch, HSM, issuer).

Invariants: a sample is a pure read of ``/proc/<pid>/stat`` and ``status``;
CPU is user + system time of the process (all threads); ``ProcessMeter``
reports CPU as a share of one core over the wall time between two samples.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One reading: when, CPU seconds so far, resident and peak memory, open fds."""

    at_s: float
    cpu_s: float
    rss_kib: int
    peak_rss_kib: int
    open_fds: int


def sample(pid: int) -> ProcessSample:
    """Read the process's counters now; OSError when it is gone."""
    proc = Path(f"/proc/{pid}")
    # The command name (field 2) may hold spaces: split after its closing paren.
    stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(stat[11]) + int(stat[12])) / _TICKS_PER_S  # utime, stime
    memory = {}
    for line in (proc / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            memory[key] = int(value.split()[0])
    try:
        open_fds = len(os.listdir(proc / "fd"))
    except PermissionError:
        open_fds = -1
    return ProcessSample(
        time.perf_counter(), cpu_s, memory.get("VmRSS", 0), memory.get("VmHWM", 0), open_fds
    )


@dataclass
class ProcessMeter:
    """CPU share and memory of one process between ``start()`` and ``stop()``."""

    pid: int
    name: str
    first: ProcessSample | None = None
    last: ProcessSample | None = None
    peak_fds: int = 0
    samples: list[ProcessSample] = field(default_factory=list)

    def start(self) -> None:
        self.first = self.last = sample(self.pid)
        self.peak_fds = self.first.open_fds
        self.samples = [self.first]

    def tick(self) -> ProcessSample | None:
        """Take a sample (the latest one wins); None once the process is gone."""
        try:
            self.last = sample(self.pid)
        except OSError:
            return None
        self.peak_fds = max(self.peak_fds, self.last.open_fds)
        self.samples.append(self.last)
        return self.last

    def cpu_percent_between(self, from_s: float, to_s: float) -> float:
        """Share of one core over the samples taken within [from_s, to_s]
        (``time.perf_counter`` times); 0 with fewer than two such samples."""
        window = [s for s in self.samples if from_s <= s.at_s <= to_s]
        if len(window) < 2 or window[-1].at_s <= window[0].at_s:
            return 0.0
        return 100.0 * (window[-1].cpu_s - window[0].cpu_s) / (window[-1].at_s - window[0].at_s)

    def stop(self) -> None:
        self.tick()

    @property
    def cpu_percent(self) -> float:
        """Share of one core, in percent, between the first and last samples."""
        if self.first is None or self.last is None or self.last.at_s <= self.first.at_s:
            return 0.0
        used_s = self.last.cpu_s - self.first.cpu_s
        return 100.0 * used_s / (self.last.at_s - self.first.at_s)

    def to_json(self) -> dict[str, object]:
        last = self.last
        return {
            "name": self.name,
            "pid": self.pid,
            "cpu_percent": round(self.cpu_percent, 1),
            "cpu_s": round(last.cpu_s - self.first.cpu_s, 2) if last and self.first else 0.0,
            "rss_mib": round(last.rss_kib / 1024, 1) if last else 0.0,
            "peak_rss_mib": round(last.peak_rss_kib / 1024, 1) if last else 0.0,
            "peak_open_fds": self.peak_fds,
        }
