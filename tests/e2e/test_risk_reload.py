"""Hot reload of the risk ruleset under a stream of requests: no request fails,
decisions before and after the swap carry their own version; SIGHUP reloads
(terminal-link.md §11, README "Risk controls")."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import deque
from pathlib import Path

from posp.risk.ruleset import default_ruleset_text
from posp.serve import HangupReload, reload_on_sighup
from posp.store.sql_store import SqlStore
from terminals.cards import TerminalCard
from terminals.session import TerminalSession
from tests.e2e.conftest import Stack, eventually

DEFAULT_VERSION = "default-2026.12.1"
PURCHASES_PER_TERMINAL = 12


def candidate(tmp_path: Path, version: str) -> Path:
    path = tmp_path / f"{version}.toml"
    path.write_text(default_ruleset_text().replace(DEFAULT_VERSION, version, 1))
    return path


async def stream(
    terminal: TerminalSession, card: TerminalCard, swapped: asyncio.Event
) -> list[str]:
    codes: list[str] = []
    for n in range(PURCHASES_PER_TERMINAL):
        if n == PURCHASES_PER_TERMINAL // 2:
            await swapped.wait()  # half the stream after the swap
        amount = 1000 + n
        outcome = await terminal.transact(lambda m, a=amount: m.purchase(card, a, pin=card.pin))
        codes.append(outcome.response_code or "timeout")
    return codes


async def versions(stack: Stack) -> set[str]:
    assert isinstance(stack.store, SqlStore)
    found = await stack.store._read("test_versions", "SELECT ruleset_version FROM risk_records")
    return {str(row["ruleset_version"]) for row in found}


async def test_a_swap_under_a_stream_fails_nothing_and_both_versions_are_recorded(
    stack: Stack, tmp_path: Path
) -> None:
    assert stack.switch is not None and stack.switch.risk is not None
    holder = stack.switch.risk.holder
    holder.path = candidate(tmp_path, "candidate-2")
    terminals = [await stack.terminal(f"1000000{i}") for i in range(1, 4)]
    swapped = asyncio.Event()
    runs = [
        asyncio.ensure_future(stream(t, stack.cards[i], swapped)) for i, t in enumerate(terminals)
    ]
    await eventually(lambda: versions(stack), timeout_s=10)  # the stream is under way
    assert holder.reload()
    swapped.set()
    results = await asyncio.gather(*runs)
    assert all(code == "00" for codes in results for code in codes), results
    assert await versions(stack) == {DEFAULT_VERSION, "candidate-2"}


async def test_sighup_reloads_the_ruleset_file(stack: Stack, tmp_path: Path) -> None:
    assert stack.switch is not None and stack.switch.risk is not None
    holder = stack.switch.risk.holder
    holder.path = candidate(tmp_path, "candidate-3")
    hangup = HangupReload()
    with reload_on_sighup(hangup):
        hangup.serving(stack.switch)
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: holder.current.version == "candidate-3")
    assert [s.new_version for s in holder.swaps] == ["candidate-3"]


async def test_a_sighup_while_starting_reloads_once_serving_and_one_while_stopping_is_ignored(
    stack: Stack, tmp_path: Path
) -> None:
    """A hangup never kills the switch: one that arrives before the rules are in force
    is applied when serving begins; one during the drain (or after) does nothing."""
    assert stack.switch is not None and stack.switch.risk is not None
    holder = stack.switch.risk.holder
    holder.path = candidate(tmp_path, "candidate-4")
    hangup = HangupReload()
    before = signal.getsignal(signal.SIGHUP)
    with reload_on_sighup(hangup):
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: hangup.pending)
        assert holder.swaps == deque()  # not serving yet: remembered, not applied
        hangup.serving(stack.switch)
        assert holder.current.version == "candidate-4"
        hangup.stopping()
        holder.path = candidate(tmp_path, "candidate-5")
        hangup()  # what the handler does with a SIGHUP during the drain
    assert signal.getsignal(signal.SIGHUP) == before  # put back in one step, as it was
    assert [s.new_version for s in holder.swaps] == ["candidate-4"]
