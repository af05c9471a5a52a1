"""End-to-end fixtures over real sockets: simulated terminals (terminals.machine +
session) → Switch (port 0, SQLite in tmp_path, in-process HSM) → issuer simulator
(port 0, a few demo cards, its own in-process HSM, ledger in a SQLite file).

The stack itself lives in :mod:`tests.stackfixtures` (shared with the conformance
and scale-out suites); ``Stack`` starts and restarts the pieces so tests can stop
the switch (or the issuer) and bring up a new one on the same files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from terminals.cards import TerminalCard
from tests.stackfixtures import MERCHANT_ID, TMK_HEX, Stack, eventually

__all__ = ["MERCHANT_ID", "TMK_HEX", "Stack", "eventually"]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack.running(tmp_path) as running:
        yield running


@pytest.fixture
def card(stack: Stack) -> TerminalCard:
    return stack.cards[0]
