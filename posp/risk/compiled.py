"""A rule after compilation: its identity and action, one plain closure over
:class:`posp.risk.facts.Facts` and the data its counters need.  No rule text is
looked at after load: the hot path calls these closures and nothing else.

Invariants:
* ``check`` is pure: it reads the input and the counter snapshot and returns
  ``None`` (the rule does not fire) or a :data:`Hit`.
* ``families`` names the kinds of counter ``check`` reads (and a counted,
  approved transaction feeds); ``caps`` (data, not closures) the limits a
  declining rule wants held atomically by the store, so two instances cannot
  both pass the last slot.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from posp.risk.facts import Facts, Family
from posp.risk.model import Action, RiskCode

#: A fired rule: the code it asks for (None = the rule's code) and what triggered it.
Hit = tuple[RiskCode | None, dict[str, str]]
CapField = Literal["amount", "net", "count", "gap"]


class Cap(NamedTuple):
    """A limit a declining rule puts on a family's counter, to hold after the add:
    amount (gross or net of refunds) or count at most ``limit``, or (``gap``) the
    previous use at least ``limit`` s ago."""

    family: Family
    field: CapField
    limit: int
    rule_id: str
    code: RiskCode


Check = Callable[[Facts], Hit | None]
#: A fused group's hits: (member index, hit) in member order; None when none fired.
GroupHits = list[tuple[int, Hit]] | None
GroupCheck = Callable[[Facts], GroupHits]
#: Builds a group's check from its members: (index, params) in file order.
GroupBuilder = Callable[[Sequence[tuple[int, Any]]], GroupCheck]


@dataclass(frozen=True, slots=True)
class Fusion:
    """How a rule joins others of its kind in ONE closure (``CompiledRuleset``
    groups the rules in scope by ``key``): the shared facts (a counter, the
    amount) are read once and each member's limits compared in a loop, instead
    of one call per rule.  The rule's own ``check`` is the same builder over a
    group of one, so a fused and an unfused evaluation decide alike."""

    key: Hashable  # rules with equal keys fuse (kind and the parameters read once)
    params: Any  # this rule's limits, as the builder reads them
    build: GroupBuilder


def single(fusion: Fusion) -> Check:
    """The check of one rule from its fusion (a group of one)."""
    group = fusion.build([(0, fusion.params)])

    def check(f: Facts) -> Hit | None:
        hits = group(f)
        return hits[0][1] if hits else None

    return check


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    kind: str
    action: Action
    code: RiskCode
    explicit_code: bool  # the file named the code: it wins over a kind's per-hit code
    txn_types: frozenset[str]
    scope_attr: str | None  # RiskInput attribute the scope tests, None = everywhere
    scope_values: frozenset[str]
    check: Check
    families: tuple[Family, ...] = ()
    caps: tuple[Cap, ...] = ()  # only on declining rules over counters
    fusion: Fusion | None = None  # None: always evaluated alone

    def code_for(self, hit: Hit) -> RiskCode:
        return self.code if self.explicit_code or hit[0] is None else hit[0]
