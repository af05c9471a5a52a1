"""Network link ⇄ issuer simulator throughput: approved PIN purchases per second,
one process, in-process HSM engines on both sides (MAC generate + verify on each side,
PIN verify at the issuer).  Prints the rate; no assertion."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from issuer_sim.app import start_issuer
from issuer_sim.settings import IssuerSettings
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.network.ids import IdAllocator
from posp.network.link import NetworkLink
from posp.network.settings import NetworkLinkSettings
from tests.network.cards import PIN, purchase
from tests.network.conftest import MemorySequences

TOTAL = 4000
CONCURRENCY = 200


async def run() -> float:
    issuer = await start_issuer(
        IssuerSettings.model_validate({"port": 0}), hsm=inprocess_hsm_client()
    )
    link = NetworkLink(
        NetworkLinkSettings(port=issuer.port),
        inprocess_hsm_client(),
        IdAllocator(MemorySequences(), 1),
        registry=CollectorRegistry(),
    )
    await link.start()
    requests = [purchase(100, pin=PIN) for _ in range(TOTAL)]
    queue = iter(requests)

    async def worker() -> int:
        ok = 0
        for request in queue:
            ok += (await link.send(request)).get(39) == "00"
        return ok

    started = time.perf_counter()
    approved = sum(await asyncio.gather(*(worker() for _ in range(CONCURRENCY))))
    elapsed = time.perf_counter() - started
    await link.close()
    await issuer.close()
    assert approved == TOTAL
    return TOTAL / elapsed


def main() -> None:
    rate = asyncio.run(run())
    print(f"network link + issuer (one process, both sides): {rate:,.0f} approved PIN purchases/s")


if __name__ == "__main__":
    main()
