"""The link's connection supervisors outlive unexpected failures (a StoreError from
the STAN allocator during sign-on or an echo): they log, back off and reconnect."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from issuer_sim.server import IssuerServer
from posp.errors import StoreError
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.network.ids import IdAllocator
from posp.network.link import NetworkLink
from tests.network.conftest import MemorySequences, link_settings
from tests.stackfixtures import eventually


class FlakyIds:
    """An id allocator whose STAN calls numbered in ``failing`` raise StoreError."""

    def __init__(self, failing: set[int]) -> None:
        self._ids = IdAllocator(MemorySequences(), 1)
        self.failing = failing
        self.calls = 0

    async def next_stan(self) -> str:
        self.calls += 1
        if self.calls in self.failing:
            raise StoreError("sequence table locked")
        return await self._ids.next_stan()


def _link(port: int, ids: FlakyIds, **overrides: object) -> NetworkLink:
    settings = link_settings(port, connections=1, connect_timeout_s=0.5, **overrides)
    allocator: Any = ids
    return NetworkLink(settings, inprocess_hsm_client(), allocator, registry=CollectorRegistry())


def _supervisors_alive(link: NetworkLink) -> bool:
    return all(not task.done() for task in link._supervisors)


async def test_a_store_error_during_sign_on_is_retried(issuer: IssuerServer) -> None:
    ids = FlakyIds({1, 2})
    link = _link(issuer.port, ids)
    await link.start()
    try:
        await eventually(lambda: link.signed_on, timeout_s=3.0)
        assert _supervisors_alive(link) and ids.calls >= 3
    finally:
        await link.close()


async def test_a_store_error_during_an_echo_reconnects(issuer: IssuerServer) -> None:
    ids = FlakyIds({2})  # the first echo after sign-on fails
    link = _link(issuer.port, ids, echo_idle_s=0.05)
    await link.start()
    try:
        await eventually(lambda: ids.calls >= 4 and link.signed_on, timeout_s=3.0)
        assert _supervisors_alive(link)
    finally:
        await link.close()
