"""The registry caches' clock, moved forward by a test instead of waiting.

``posp.store.registry_cache``, ``posp.store.sql_store`` and
``posp.tms.service`` read ``time.monotonic()`` for a cached row's age and a
read's start; ``moved_registry_clock`` replaces the ``time`` those modules see
(nothing else) with one ``ahead_s`` ahead.  ``count_key_reads`` records which
reads by key (row reads, bulk checks) a store makes from then on."""

from __future__ import annotations

import time
from typing import Any

import pytest

from posp.store import registry_cache, sql_store
from posp.store.sql_store import SqlStore
from posp.tms import service


class MovedClock:
    """``time`` for the registry cache, ``ahead_s`` seconds ahead of the real clock."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead_s

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def moved_registry_clock(monkeypatch: pytest.MonkeyPatch) -> MovedClock:
    clock = MovedClock()
    monkeypatch.setattr(registry_cache, "time", clock)
    monkeypatch.setattr(sql_store, "time", clock)
    monkeypatch.setattr(service, "time", clock)
    return clock


#: The ops of the bulk checks' statements (registry rows, management views).
CHECK_OPS = frozenset({"terminals_versions", "merchants_versions", "tms_view_versions"})


def count_key_reads(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch, *, checks_raise: Exception | None = None
) -> list[str]:
    """The ops of ``store``'s reads by key from now on, in order; with
    ``checks_raise``, every bulk check's statement (``CHECK_OPS``) raises it."""
    ops: list[str] = []
    original = store._key_rows

    async def counted(op: str, sql: str, params: Any = ()) -> list[Any]:
        ops.append(op)
        if checks_raise is not None and op in CHECK_OPS:
            raise checks_raise
        return await original(op, sql, params)

    monkeypatch.setattr(store, "_key_rows", counted)
    return ops
