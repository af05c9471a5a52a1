"""Two switch instances on one PostgreSQL: a duplicate is refused across them."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.switch import Switch
from tests.switch.conftest import MERCHANT_ID, TERMINAL_ID, provision, switch_settings
from tests.switch.termclient import SimTerminal

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[tuple[str, str]]:
    """A fresh schema name (dropped afterwards) on the test PostgreSQL."""
    schema = f"sw_{secrets.token_hex(5)}"
    yield pg_dsn, schema

    async def drop() -> None:
        connection = await asyncpg.connect(pg_dsn)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()

    asyncio.run(drop())


@pytest.fixture
async def two_switches(tmp_path: Path, pg_schema: tuple[str, str]) -> AsyncIterator[list[Switch]]:
    dsn, schema = pg_schema
    url = f"{dsn}?schema={schema}"
    switches = [
        Switch(switch_settings(tmp_path / str(node), store_url=url, node_id=node))
        for node in (1, 2)
    ]
    for running in switches:
        await running.start()
    assert switches[0].store is not None
    await provision(switches[0].store, inprocess_hsm_client())
    yield switches
    for running in switches:
        await running.stop()


async def test_duplicate_sent_to_two_instances_is_answered_94_by_one(
    two_switches: list[Switch],
) -> None:
    first = SimTerminal(TERMINAL_ID, MERCHANT_ID)
    await first.connect(two_switches[0].port)
    assert (await first.sign_in()).message[39] == "00"
    second = SimTerminal(TERMINAL_ID, MERCHANT_ID, keys=first.keys)
    await second.connect(two_switches[1].port)
    body = first.encode(first.purchase(), mac=True)
    answers = await asyncio.gather(first.exchange(body), second.exchange(body))
    codes = sorted(frame.message.text(39) for _body, frame in answers)
    assert codes == ["91", "94"]
    rrns = sorted(frame.message.text(37) for _body, frame in answers)
    assert [rrn[:2] for rrn in rrns] == ["01", "02"]  # each node's RRNs carry its id
    await first.close()
    await second.close()
