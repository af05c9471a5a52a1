"""Fixtures of the fault tests: a :class:`FaultStack` in the test's directory,
closed (every process it started stopped) whatever the test's fate, and a fresh
PostgreSQL schema per test when one is asked for (``pg_url``, the scale-out suite's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.procs import FaultStack
from tests.scaleout.conftest import pg_url

__all__ = ["pg_url"]


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[list[FaultStack]]:
    """Stacks a test creates (append them); all closed at the end."""
    created: list[FaultStack] = []
    yield created
    for stack in created:
        stack.close()


@pytest.fixture
def stack(tmp_path: Path, stacks: list[FaultStack]) -> FaultStack:
    """One switch on SQLite, in-process HSM, network timeout 5 s."""
    created = FaultStack(tmp_path)
    stacks.append(created)
    return created
