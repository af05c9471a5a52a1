"""Fixtures of the HSM client/server suite: a simulator on an ephemeral port and
the one HsmClient over each transport (in-process engine, TCP to the simulator)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hsm_sim.server import HsmServer, start_hsm_server
from posp.hsm import HsmClient, TcpTransport
from posp.lab.inprocess_hsm import InProcessTransport


@pytest.fixture
async def hsm_server() -> AsyncIterator[HsmServer]:
    """A simulator on 127.0.0.1, ephemeral port, test LMK set, no metrics HTTP."""
    server = await start_hsm_server(host="127.0.0.1", port=0, metrics_port=0)
    yield server
    await server.close()


@pytest.fixture
async def tcp_client(hsm_server: HsmServer) -> AsyncIterator[HsmClient]:
    transport = TcpTransport("127.0.0.1", hsm_server.port, connections=2, timeout_s=2.0)
    client = HsmClient(transport)
    await client.start()
    await transport.wait_connected(2)
    yield client
    await client.close()


@pytest.fixture(params=["inprocess", "tcp"])
async def hsm(request: pytest.FixtureRequest) -> AsyncIterator[HsmClient]:
    """The HsmClient over each transport in turn: the contract suite runs against both."""
    if request.param == "inprocess":
        client = HsmClient(InProcessTransport())
        yield client
        await client.close()
        return
    server = await start_hsm_server(host="127.0.0.1", port=0, metrics_port=0)
    tcp = TcpTransport("127.0.0.1", server.port, connections=2, timeout_s=2.0)
    await tcp.wait_connected(1)
    yield HsmClient(tcp)
    await tcp.close()
    await server.close()
