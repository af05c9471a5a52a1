"""What header digit 6 and the caps cost a card transaction: the terminal's
management view read from the store (a cache miss: one query for the row,
parameter sets and rollout offer) and served from the per-terminal cache (a
hit: no store round trip), on a SQLite store with 1,000 managed terminals."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from posp.store import open_store
from posp.store.ic import SqlIcStore
from posp.store.sql_store import SqlStore
from posp.store.tms import SqlTmsStore
from posp.tms.params import ParamValues, Scope
from posp.tms.service import TerminalManagement

TERMINALS = 1000
HITS = 200_000


async def _run(tmp: Path) -> None:
    store = open_store(f"sqlite:///{tmp / 'posp.db'}")
    await store.open()
    assert isinstance(store, SqlStore)
    try:
        tms = SqlTmsStore(store)
        await tms.set_param_set(Scope.GROUP, "default", ParamValues(purchase_cap_minor=500_000))
        ids = [f"{10000000 + n}" for n in range(TERMINALS)]
        for tid in ids:
            await tms.set_held_params(tid, 1)
        management = TerminalManagement(tms, SqlIcStore(store), max_age_s=3600.0)
        started = time.perf_counter()
        for tid in ids:
            await management.view(tid)
        miss_s = (time.perf_counter() - started) / TERMINALS
        started = time.perf_counter()
        for n in range(HITS):
            await management.view(ids[n % TERMINALS])
        hit_s = (time.perf_counter() - started) / HITS
    finally:
        await store.close()
    print(f"management view, miss (one query): {1 / miss_s:9.0f}/s  {miss_s * 1e6:8.1f} us")
    print(f"management view, cached hit:       {1 / hit_s:9.0f}/s  {hit_s * 1e6:8.2f} us")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(Path(tmp)))


if __name__ == "__main__":
    main()
