"""The purchase benchmark's ladder (``POSP_BENCH_RISK=ladder``) cuts rulesets out
of the default one: each cut must load, keep exactly the rules named, and add
the counters its rung claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from posp.risk.ruleset import load_ruleset
from tests.bench.bench_purchase import LADDER, NO_COUNTER, ruleset_of


@pytest.mark.parametrize(("name", "rule_ids"), [r for r in LADDER if r[1] is not None])
def test_each_rung_loads_with_exactly_its_rules(
    tmp_path: Path, name: str, rule_ids: tuple[str, ...]
) -> None:
    ruleset = load_ruleset(ruleset_of(rule_ids, tmp_path / "rules.toml"))
    assert sorted(rule.id for rule in ruleset.rules) == sorted(rule_ids)
    assert ruleset.version.startswith("bench-cut-")


def test_the_rungs_add_counters_one_after_another(tmp_path: Path) -> None:
    families = []
    for index, (_, rule_ids) in enumerate(LADDER):
        path = ruleset_of(rule_ids, tmp_path / f"{index}.toml") if rule_ids else None
        families.append(len(load_ruleset(path).families))
    assert families[0] == 0  # no counter at all: no snapshot, no hold, no record
    assert families[1] == 1  # the card's day
    assert families[1] < families[2] < families[3]


def test_a_rule_the_default_ruleset_lacks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rule no-such-rule"):
        ruleset_of((*NO_COUNTER, "no-such-rule"), tmp_path / "rules.toml")
    with pytest.raises(ValueError, match="twice"):
        ruleset_of(("region", "region"), tmp_path / "rules.toml")


@pytest.mark.parametrize(
    "rule_ids",
    [("merchant-day-amount",), ("card-terminal-day-count",), ("single-amount", "night")],
)
def test_an_id_that_begins_another_keeps_that_rule_alone(
    tmp_path: Path, rule_ids: tuple[str, ...]
) -> None:
    """merchant-day-amount begins merchant-day-amount-quasi-cash: only the rule
    named is kept."""
    ruleset = load_ruleset(ruleset_of(rule_ids, tmp_path / "rules.toml"))
    assert sorted(rule.id for rule in ruleset.rules) == sorted(rule_ids)
