"""Sign-ins per second through the full path: TCP sockets, switch pipeline,
in-process HSM (A0 ×2 + BU ×2 per 001 sign-in), SQLite journal and registry.

Run: ``python -m tests.bench signin`` (``POSP_BENCH_SIGNIN_S``: seconds per
phase, 5).  Figures on a shared 2-core machine are pessimistic: the clients run
in the same process and event loop as the switch.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.log import configure_logging
from posp.settings import load_settings
from posp.store import open_store
from posp.switch import Switch
from tests.switch.conftest import MERCHANT_ID, provision
from tests.switch.termclient import SimTerminal

TERMINALS = 32
DURATION_S = float(os.environ.get("POSP_BENCH_SIGNIN_S", "5"))


async def _run(data_dir: Path, net_code: str) -> tuple[int, float]:
    store = open_store(f"sqlite:///{data_dir / f'bench-{net_code}.db'}", node_id="01")
    await store.open()
    hsm = inprocess_hsm_client()
    settings = load_settings(
        terminal_port=0, metrics_enabled=False, network_enabled=False, data_dir=data_dir
    )
    switch = Switch(settings, store=store, hsm=hsm)
    await switch.start()
    terminals = []
    for index in range(TERMINALS):
        terminal_id = f"{20000000 + index}"
        await provision(store, hsm, terminal_id)
        client = SimTerminal(terminal_id, MERCHANT_ID)
        await client.connect(switch.port)
        terminals.append(client)
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
    await asyncio.gather(*(loop(client) for client in terminals))
    elapsed = time.perf_counter() - started
    for client in terminals:
        await client.close()
    await switch.stop()
    await store.close()
    if failed:
        print(f"  {failed} sign-ins failed")
    return done, elapsed


def main() -> None:
    configure_logging("console", "error")
    import uvloop  # the production loop (a dependency on Linux)

    with tempfile.TemporaryDirectory() as tmp:
        for net_code in ("001", "004"):
            done, elapsed = uvloop.run(_run(Path(tmp), net_code))
            print(
                f"sign-in {net_code}: {done / elapsed:,.0f} /s "
                f"({done} in {elapsed:.1f} s, {TERMINALS} terminals, in-process HSM, SQLite)"
            )


if __name__ == "__main__":
    main()
