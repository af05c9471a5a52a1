"""Terminal-side verification of a 5 MiB signed package (issue 17 target: <= 50 ms).

Prints, per call: the package check alone (python-tuf's length and SHA-256
check against the signed targets entry) and a terminal's whole update (load
and verify root, timestamp, snapshot and targets, download, verify, install)
from a repository in memory-backed files."""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.tms.lab import Lab

PACKAGE_BYTES = 5 * 1024 * 1024
TARGET_MS = 50.0
_FAST_DIR = "/dev/shm" if Path("/dev/shm").is_dir() else None


def _median_ms(run: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory(dir=_FAST_DIR) as tmp:
        lab = Lab.create(Path(tmp))
        target = lab.publish("V2.0", size_bytes=PACKAGE_BYTES)
        info = lab.repo.targets().signed.targets[target]
        data = next((lab.repo.targets_dir / "P8").iterdir()).read_bytes()

        check_ms = _median_ms(lambda: info.verify_length_and_hashes(io.BytesIO(data)), 20)

        def whole_update() -> None:
            if lab.terminal().install(target) is not None:
                raise RuntimeError("the benchmark package did not verify")

        update_ms = _median_ms(whole_update, 10)
    for name, ms in (("package check (length + SHA-256)", check_ms), ("whole update", update_ms)):
        verdict = "ok" if ms <= TARGET_MS else "OVER TARGET"
        print(f"5 MiB {name:34s} {ms:7.1f} ms  (target {TARGET_MS:.0f} ms: {verdict})")
    print(f"package check throughput {PACKAGE_BYTES / 1024 / 1024 / (check_ms / 1000):.0f} MiB/s")


if __name__ == "__main__":
    main()
