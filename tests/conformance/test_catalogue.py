"""Every conformance scenario against the real stack (issuer simulator, switch,
SQLite store, in-process HSM): one test per scenario of the catalogue.

A scenario whose switch feature has not landed is listed in ``PENDING`` and
marked ``xfail(strict=True)`` — it is still run, and the mark must be removed
the moment the feature passes.
"""

from __future__ import annotations

import pytest

from terminals.conformance import Status, run_catalogue
from terminals.scenarios import CATALOGUE
from tests.conformance.conftest import RunningStack

# feature tag -> why it cannot pass yet (empty: every feature has landed)
PENDING: dict[str, str] = {}


def _param(name: str, feature: str) -> object:
    reason = PENDING.get(feature)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(name, id=name, marks=marks)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("name", [_param(s.name, s.feature) for s in CATALOGUE])
async def test_scenario_passes_against_the_real_stack(stack: RunningStack, name: str) -> None:
    """The switch behaves as the named catalogue scenario requires."""
    [result] = await run_catalogue(stack.target, name)
    assert result.status is Status.PASS, result.reason


def test_pending_tags_name_catalogue_features() -> None:
    """A pending tag that names no scenario's feature would mark nothing."""
    assert set(PENDING) <= {s.feature for s in CATALOGUE}


@pytest.mark.asyncio(loop_scope="module")
async def test_risk_flags_are_journaled_for_review(stack: RunningStack) -> None:
    """The round-amount purchases the risk scenario gets approved are listed as flagged."""
    [result] = await run_catalogue(stack.target, "risk_flags_approve")
    assert result.status is Status.PASS, result.reason
    risk = stack.switch.risk
    assert risk is not None and stack.switch.pipeline is not None
    today = stack.switch.pipeline.services.local_now().date()
    flagged = await risk.records.flagged(today)
    rules = {d["rule"] for record in flagged for d in record.decisions}
    assert {"round-amount", "card-terminal-interval"} <= rules
