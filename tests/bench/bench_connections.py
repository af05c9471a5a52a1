"""Memory per signed-in idle terminal connection, and the sign-in ramp's rate.

``posp serve`` (SQLite, network off) and ``hsm-sim`` each in its own process;
``posp-fleet --long-connections --hold`` signs in ``POSP_BENCH_CONNECTIONS``
terminals (default 10,000), each on its own connection, and holds them idle.
Twice in one run: a warm-up fleet of the first ``POSP_BENCH_WARMUP`` terminals
(default 1,000) signs in, holds and leaves, then the whole fleet signs in and
holds.  The figure is the switch's resident memory while the whole fleet is
held, minus its resident memory while the warm-up fleet was held, divided by
the connections added: what one more signed-in idle connection costs, with
the one-off costs (imports, caches, the allocator's first arenas, the first
sign-ins' HSM keys) taken out by the warm-up.  Each terminal's registry row
cached by the switch counts, as a signed-in terminal brings it.

Target (issue 19): ≤ 3 KiB per signed-in idle connection.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
from pathlib import Path
from typing import Any

from terminals.procstat import ProcessMeter
from tests.terminals.processes import LabStack

TARGET_KIB = 3.0
HOLD_S = 4.0
FD_HEADROOM = 256


def _held_rss_kib(meter: ProcessMeter, report: dict[str, Any], count: int) -> float:
    """Median resident memory of the switch over the samples taken while it held
    at least ``count`` terminal connections (the fleet's hold)."""
    held = [s.rss_kib for s in meter.samples if s.open_fds >= count]
    if not held:
        raise RuntimeError(f"the switch never held {count} connections: {report['processes']}")
    return float(statistics.median(held))


def _hold(stack: LabStack, fleet_file: Path, port: int, count: int) -> tuple[float, float]:
    """Sign in the first ``count`` terminals of ``fleet_file`` and hold them; the
    switch's resident KiB while they were held, and the ramp's sign-ins/s."""
    args = ["--fleet-file", str(fleet_file), "--port", str(port), "--long-connections"]
    args += ["--terminals", str(count), "--hold", str(HOLD_S), "--timeout-s", "30"]
    report = stack.run_fleet(args, tick_s=0.25)
    if report["sign_ins"] != count or report["dropped_connections"]:
        raise RuntimeError(f"fleet of {count}: {report['sign_ins']} signed in, {report}")
    switch = next(p for p in stack.processes if p.name == "posp-serve")
    return _held_rss_kib(switch.meter, report, count), float(report["sign_ins_per_s"])


def measure(total: int, warmup: int) -> dict[str, float]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = total + FD_HEADROOM
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise RuntimeError(f"hard RLIMIT_NOFILE {hard} < {needed} needed")
    if soft != resource.RLIM_INFINITY and soft < needed:  # the children inherit it
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as tmp:
        stack = LabStack(Path(tmp))
        try:
            hsm = stack.start_hsm()
            stack.switch_env(issuer_port=None, hsm_url=f"tcp://127.0.0.1:{hsm.port}")
            fleet_file = stack.provision_fleet(total)
            switch = stack.start_switch()
            base_kib, _ = _hold(stack, fleet_file, switch.port, warmup)
            full_kib, rate = _hold(stack, fleet_file, switch.port, total)
        finally:
            stack.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return {
        "warmup_rss_kib": base_kib,
        "full_rss_kib": full_kib,
        "per_connection_kib": (full_kib - base_kib) / (total - warmup),
        "sign_ins_per_s": rate,
    }


def main() -> None:
    total = int(os.environ.get("POSP_BENCH_CONNECTIONS", "10000"))
    warmup = int(os.environ.get("POSP_BENCH_WARMUP", "1000"))
    figures = measure(total, warmup)
    print(f"signed-in idle connections held by one `posp serve`: {warmup:,} then {total:,}")
    print(f"  switch RSS with {warmup:,} held  {figures['warmup_rss_kib'] / 1024:8.1f} MiB")
    print(f"  switch RSS with {total:,} held  {figures['full_rss_kib'] / 1024:8.1f} MiB")
    per = figures["per_connection_kib"]
    verdict = "met" if per <= TARGET_KIB else "not met"
    print(f"  per added connection: {per:.2f} KiB (target <= {TARGET_KIB:.0f} KiB: {verdict})")
    print(f"  sign-ins during the ramp of {total:,}: {figures['sign_ins_per_s']:,.0f}/s")


if __name__ == "__main__":
    main()
