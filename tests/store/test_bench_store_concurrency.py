"""The store benchmark's extra journal runs (``POSP_BENCH_STORE_CONCURRENCY``):
a list of coroutine counts, and a clear refusal naming the setting otherwise."""

from __future__ import annotations

import pytest

from tests.bench.bench_store import _concurrencies


def test_unset_adds_no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSP_BENCH_STORE_CONCURRENCY", raising=False)
    assert _concurrencies() == []


def test_a_comma_separated_list_is_run_in_its_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSP_BENCH_STORE_CONCURRENCY", "3, 6,12,,24")
    assert _concurrencies() == [3, 6, 12, 24]


@pytest.mark.parametrize("text", ["six", "3,0", "-2", "1.5", "12001"])
def test_anything_else_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("POSP_BENCH_STORE_CONCURRENCY", text)
    with pytest.raises(SystemExit, match="POSP_BENCH_STORE_CONCURRENCY"):
        _concurrencies()
