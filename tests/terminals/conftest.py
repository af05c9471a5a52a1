"""Fixtures of the terminal tests: the fake switch on an ephemeral port, and the
lab state (the chip cards' ATCs, ``terminals.chipwallet``) in the test's own
directory, never in the user's home."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.terminals.fakeswitch import FakeSwitch, serve


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = await serve(FakeSwitch())
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture(autouse=True)
def lab_state_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
