"""Fixtures: an issuer simulator and a NetworkLink talking over 127.0.0.1, each with
its own in-process HSM engine (same TEST LMK set)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from issuer_sim.app import start_issuer
from issuer_sim.server import IssuerServer
from issuer_sim.settings import IssuerSettings
from posp.hsm.api import HsmClient
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.network.ids import IdAllocator
from posp.network.link import NetworkLink
from posp.network.settings import NetworkLinkSettings


class MemorySequences:
    """A Store stand-in for the id allocator: in-memory named counters."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.calls = 0

    async def next_sequence(self, name: str) -> int:
        self.calls += 1
        self.values[name] = self.values.get(name, 0) + 1
        return self.values[name]


@dataclass
class Pair:
    issuer: IssuerServer
    link: NetworkLink
    registry: CollectorRegistry
    switch_hsm: HsmClient


def issuer_settings(**overrides: object) -> IssuerSettings:
    return IssuerSettings.model_validate({"port": 0, "flush_interval_s": 60.0, **overrides})


def link_settings(port: int, **overrides: object) -> NetworkLinkSettings:
    values: dict[str, object] = {
        "port": port,
        "timeout_s": 2.0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "connect_timeout_s": 2.0,
    }
    values.update(overrides)
    return NetworkLinkSettings.model_validate(values)


@pytest.fixture
async def issuer() -> AsyncIterator[IssuerServer]:
    server = await start_issuer(issuer_settings(), hsm=inprocess_hsm_client())
    yield server
    await server.close()


async def open_link(port: int, **overrides: object) -> NetworkLink:
    """A started link with its own HSM and registry (caller closes it)."""
    link = NetworkLink(
        link_settings(port, **overrides),
        inprocess_hsm_client(),
        IdAllocator(MemorySequences(), 1),
        registry=CollectorRegistry(),
    )
    await link.start()
    return link


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample value (0 when absent)."""
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def pair(issuer: IssuerServer) -> AsyncIterator[Pair]:
    registry = CollectorRegistry()
    hsm = inprocess_hsm_client()
    link = NetworkLink(
        link_settings(issuer.port), hsm, IdAllocator(MemorySequences(), 1), registry=registry
    )
    await link.start()
    assert link.signed_on
    yield Pair(issuer, link, registry, hsm)
    await link.close()
