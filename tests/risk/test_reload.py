"""Hot reload: requests in flight keep the version they started with, later
ones get the new one, both versions appear in decisions; a bad file keeps
the old ruleset."""

from __future__ import annotations

import asyncio
from pathlib import Path

from posp.risk.engine import CompiledRuleset
from posp.risk.reload import RulesetHolder
from posp.risk.ruleset import load_ruleset
from tests.risk.factory import inp, ruleset

ROUND = '[[rules]]\nid = "round"\nkind = "round_amount"\nunit_minor = 100\n'


async def _request(holder: RulesetHolder, started: asyncio.Event, go: asyncio.Event) -> str:
    rules: CompiledRuleset = holder.current  # taken once, when the risk step starts
    started.set()
    await go.wait()  # the swap happens while this request waits (say, on the store)
    (decision,) = rules.evaluate(inp(amount_minor=100)).decisions
    return decision.ruleset_version


async def test_in_flight_requests_keep_their_version_and_new_ones_get_the_new() -> None:
    holder = RulesetHolder(ruleset(ROUND, version="v1"))
    started, go = asyncio.Event(), asyncio.Event()
    in_flight = asyncio.create_task(_request(holder, started, go))
    await started.wait()
    old = holder.swap(ruleset(ROUND, version="v2"))
    go.set()
    assert old.version == "v1" and await in_flight == "v1"
    (after,) = holder.current.evaluate(inp(amount_minor=100)).decisions
    assert after.ruleset_version == "v2"
    assert [(s.old_version, s.new_version) for s in holder.swaps] == [("v1", "v2")]


def test_reload_swaps_in_a_good_file_and_keeps_the_old_ruleset_on_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(f'version = "file-1"\n{ROUND}')
    holder = RulesetHolder(load_ruleset(), path)
    assert holder.reload() and holder.current.version == "file-1"
    path.write_text('version = "file-2"\n[[rules]]\nid = "x"\nkind = "no_such_kind"\n')
    assert not holder.reload() and holder.current.version == "file-1"
