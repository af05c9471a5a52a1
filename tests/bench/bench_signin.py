"""Sign-ins per second through the full path: TCP sockets, switch pipeline,
in-process HSM (A0 ×2 + BU ×2 per 001 sign-in), SQLite journal and registry.

The switch runs as ``posp serve`` runs it: on uvloop, with the server's
garbage-collector tuning (``posp.loop.run(server=True)``).

Run: ``python -m tests.bench signin`` (``POSP_BENCH_SIGNIN_S``: seconds per
phase, 5; ``POSP_BENCH_SIGNIN_PROCS``: switch processes side by side on one
SQLite file, each with its own in-process HSM and terminals, 1).  Figures on
a shared 2-core machine are pessimistic: the clients run in the same process
and event loop as the switch.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.log import configure_logging
from posp.loop import run as run_loop
from posp.settings import load_settings
from posp.store import open_store
from posp.switch import Switch
from tests.switch.conftest import MERCHANT_ID, provision
from tests.switch.termclient import SimTerminal

TERMINALS = 32
DURATION_S = float(os.environ.get("POSP_BENCH_SIGNIN_S", "5"))
#: Switch processes side by side on one SQLite file, each with its own
#: in-process HSM and its own 32 terminals (``POSP_BENCH_SIGNIN_PROCS``, 1).
PROCESSES = int(os.environ.get("POSP_BENCH_SIGNIN_PROCS", "1"))


def _store_url(data_dir: Path, net_code: str) -> str:
    return f"sqlite:///{data_dir / f'bench-{net_code}.db'}"


def _terminal_ids(process: int) -> list[str]:
    return [f"{20000000 + 1000 * process + index}" for index in range(TERMINALS)]


async def _provision(data_dir: Path, net_code: str, processes: int) -> None:
    """Register every process's terminals before any switch starts."""
    store = open_store(_store_url(data_dir, net_code), node_id="01")
    await store.open()
    hsm = inprocess_hsm_client()
    for process in range(processes):
        for terminal_id in _terminal_ids(process):
            await provision(store, hsm, terminal_id)
    await store.close()


async def _run(
    data_dir: Path, net_code: str, process: int = 0, start: Callable[[], object] | None = None
) -> tuple[int, float, float]:
    store = open_store(_store_url(data_dir, net_code), node_id=f"{process + 1:02d}")
    await store.open()
    hsm = inprocess_hsm_client()
    settings = load_settings(
        terminal_port=0, metrics_enabled=False, network_enabled=False, data_dir=data_dir
    )
    switch = Switch(settings, store=store, hsm=hsm)
    await switch.start()
    terminals = []
    for terminal_id in _terminal_ids(process):
        client = SimTerminal(terminal_id, MERCHANT_ID)
        await client.connect(switch.port)
        terminals.append(client)
    if start is not None:  # every process ready: they measure the same seconds
        await asyncio.to_thread(start)
    done = 0
    failed = 0
    deadline = time.perf_counter() + DURATION_S

    async def loop(client: SimTerminal) -> None:
        nonlocal done, failed
        while time.perf_counter() < deadline:
            frame = await client.sign_in(net_code)
            if frame.message.get(39) == "00":
                done += 1
            else:
                failed += 1

    started = time.perf_counter()
    cpu_started = time.process_time()
    await asyncio.gather(*(loop(client) for client in terminals))
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started  # switch, HSM, SQLite threads, terminals
    for client in terminals:
        await client.close()
    await switch.stop()
    await store.close()
    if failed:
        print(f"  {failed} sign-ins failed")
    return done, elapsed, cpu_s


def _child(data_dir: Path, net_code: str, process: int, start: Any, results: Any) -> None:
    configure_logging("console", "error")
    results.put(run_loop(_run(data_dir, net_code, process, start.wait), server=True))


def _measure(data_dir: Path, net_code: str) -> tuple[int, float, float]:
    """Sign-ins done, the seconds they took and the CPU seconds every process spent
    meanwhile (switch, in-process HSM, SQLite threads, terminals)."""
    run_loop(_provision(data_dir, net_code, PROCESSES))
    if PROCESSES == 1:
        return run_loop(_run(data_dir, net_code), server=True)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    children = [
        context.Process(target=_child, args=(data_dir, net_code, n, start, results))
        for n in range(PROCESSES)
    ]
    for child in children:
        child.start()
    measured = [results.get(timeout=120 + DURATION_S) for _ in children]
    for child in children:
        child.join()
    return (
        sum(done for done, _, _ in measured),
        max(elapsed for _, elapsed, _ in measured),
        sum(cpu for _, _, cpu in measured),
    )


def main() -> None:
    configure_logging("console", "error")
    with tempfile.TemporaryDirectory() as tmp:
        for net_code in ("001", "004"):
            done, elapsed, cpu_s = _measure(Path(tmp), net_code)
            print(
                f"sign-in {net_code}: {done / elapsed:,.0f} /s ({done} in {elapsed:.1f} s,"
                f" {PROCESSES} process(es) x {TERMINALS} terminals, in-process HSM, SQLite),"
                f" CPU {1e6 * cpu_s / max(done, 1):,.0f} us per sign-in"
            )


if __name__ == "__main__":
    main()
