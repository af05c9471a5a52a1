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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

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

    def code_for(self, hit: Hit) -> RiskCode:
        return self.code if self.explicit_code or hit[0] is None else hit[0]
