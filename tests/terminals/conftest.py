"""Fixtures of the terminal tests: the fake switch on an ephemeral port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.terminals.fakeswitch import FakeSwitch, serve


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = await serve(FakeSwitch())
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
