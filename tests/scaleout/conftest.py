"""Two switch instances on one PostgreSQL (fresh schema, dropped afterwards), both
linked to one issuer simulator: "several switch processes on one database behave as
one switch".  Each instance opens its own store and HSM client, as separate processes
would; the issuer and the zone keys have short grace periods so a test can outlive
them.  Skips (via ``pg_dsn``) when PostgreSQL is not reachable."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from posp.store import open_store
from posp.switch import Switch
from terminals.session import TerminalSession
from tests.conftest import drop_pg_schema
from tests.stackfixtures import Stack, eventually

KEY_GRACE_S = 0.5
NODES = (1, 2)


@pytest.fixture
def pg_url(pg_dsn: str) -> Iterator[str]:
    """Store URL of a fresh schema on the test PostgreSQL (dropped afterwards)."""
    schema = f"so_{secrets.token_hex(5)}"
    joiner = "&" if "?" in pg_dsn else "?"
    yield f"{pg_dsn}{joiner}schema={schema}"
    drop_pg_schema(pg_dsn, schema)


@dataclass
class ScaleOut:
    """The issuer (through ``stack``) and two switch instances A and B."""

    stack: Stack
    a: Switch
    b: Switch

    async def terminal(self, terminal_id: str, switch: Switch) -> TerminalSession:
        """A terminal provisioned once and signed in at ``switch``."""
        return await self.stack.terminal(terminal_id, port=switch.port)

    def session_at(self, session: TerminalSession, switch: Switch) -> TerminalSession:
        """The same terminal (same machine: keys, traces, batch) reaching ``switch``."""
        return self.stack.session(session.machine, port=switch.port)

    async def all_linked(self) -> None:
        """Wait until every link connection of both instances is up at the issuer."""
        issuer = self.stack.issuer
        assert issuer is not None
        wanted = sum(s.settings.network.connections for s in (self.a, self.b))
        await eventually(lambda: len([c for c in issuer.connections if c.is_open]) == wanted)


@pytest.fixture
async def scaleout(tmp_path: Path, pg_url: str) -> AsyncIterator[ScaleOut]:
    async with started_scaleout(Stack.create(tmp_path, store_url=pg_url), pg_url) as running:
        yield running


@contextlib.asynccontextmanager
async def started_scaleout(stack: Stack, pg_url: str) -> AsyncIterator[ScaleOut]:
    """The issuer of ``stack`` and the two instances, stopped afterwards."""
    await stack.start_issuer(key_grace_s=KEY_GRACE_S)
    stack.store = open_store(pg_url, node_id="00")  # provisioning and inspection
    await stack.store.open()
    switches: list[Switch] = []
    try:
        for node in NODES:
            switch = Switch(stack.settings(node_id=node, key_grace_s=KEY_GRACE_S))
            switches.append(switch)
            await switch.start()
        yield ScaleOut(stack, switches[0], switches[1])
    finally:
        for session in stack.sessions:
            await session.close()
        for switch in switches:
            await switch.stop()
        await stack.close()
