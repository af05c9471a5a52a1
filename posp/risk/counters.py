"""Velocity counters: the Protocol the engine's caller uses, the add it sends,
and an in-memory implementation (tests, backtest, a single process).

A counter is a row per key: amount_minor, count, refunded_minor, last_at_s
(local seconds of the latest counted use) and an expiry date.

Invariants (every implementation, checked by one contract suite):
* ``check_and_add`` is all-or-nothing and atomic: either every add is applied
  and every cap held *after* the add, or nothing changes.  It never reads,
  decides in the caller and writes back (two instances racing on the last
  slot: exactly one wins).
* ``apply`` adds unconditionally (releases of a hold, refunds): caps are ignored.
* A missing key reads as zeros; a negative add (release) never touches
  ``last_at_s``; expiry only ever moves later.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from posp.risk.inputs import ZERO, CounterValue


class CounterAdd(NamedTuple):
    """One counter's change, with the caps that must hold after it.  (A
    NamedTuple: a hold builds several per purchase, and a tuple is built in a
    third of a frozen dataclass's time.)"""

    key: str
    amount_minor: int = 0
    txn_count: int = 0
    refunded_minor: int = 0
    at_s: int = 0
    expires_on: dt.date = dt.date(2000, 1, 1)
    max_amount_minor: int | None = None
    max_net_minor: int | None = None  # amount minus refunds
    max_count: int | None = None
    min_gap_s: int | None = None  # the previous use at least this long before at_s

    def holds_on(self, before: CounterValue) -> bool:
        """Whether every cap holds once this add is applied to ``before``."""
        amount = before.amount_minor + self.amount_minor
        if self.max_amount_minor is not None and amount > self.max_amount_minor:
            return False
        if self.max_net_minor is not None and amount - before.refunded_minor > self.max_net_minor:
            return False
        if self.max_count is not None and before.txn_count + self.txn_count > self.max_count:
            return False
        return not (
            self.min_gap_s is not None
            and before.txn_count > 0
            and before.last_at_s + self.min_gap_s > self.at_s
        )

    def applied_to(self, before: CounterValue) -> CounterValue:
        last = max(before.last_at_s, self.at_s) if self.txn_count > 0 else before.last_at_s
        return CounterValue(
            before.amount_minor + self.amount_minor,
            before.txn_count + self.txn_count,
            before.refunded_minor + self.refunded_minor,
            last,
        )

    def negated(self) -> CounterAdd:
        """The release of this add (no caps: giving back never fails)."""
        return CounterAdd(
            self.key,
            -self.amount_minor,
            -self.txn_count,
            -self.refunded_minor,
            self.at_s,
            self.expires_on,
        )

    def uncapped(self) -> CounterAdd:
        return CounterAdd(*self[:6])


@dataclass(frozen=True, slots=True)
class AddResult:
    """Whether a check-and-add was applied, and (when refused) the counters as they
    were; a refusal's values tell which cap broke (an implementation may leave
    ``before`` empty on success)."""

    applied: bool
    before: dict[str, CounterValue]


class VelocityCounters(Protocol):
    async def snapshot(self, keys: Sequence[str]) -> dict[str, CounterValue]:
        """Current values of ``keys`` (missing keys are left out: they read as zeros)."""
        ...

    async def check_and_add(self, adds: Sequence[CounterAdd]) -> AddResult:
        """Apply every add if every cap holds afterwards, atomically; else nothing.
        Keys are unique within one call (a hold is)."""
        ...

    async def apply(self, adds: Sequence[CounterAdd]) -> None:
        """Apply every add, caps ignored (releases and refunds)."""
        ...

    async def purge_expired(self, today: dt.date) -> int:
        """Delete counters whose expiry is before ``today``; how many went."""
        ...


class InMemoryCounters:
    """Counters in a dict.  Each call runs to completion without awaiting, so on
    one event loop it is as atomic as the SQL implementations."""

    def __init__(self) -> None:
        self.values: dict[str, CounterValue] = {}
        self._expiry: dict[str, dt.date] = {}

    def read_now(self, keys: Iterable[str]) -> dict[str, CounterValue]:
        values = self.values
        return {k: values[k] for k in keys if k in values}

    def check_and_add_now(self, adds: Sequence[CounterAdd]) -> AddResult:
        before = self.read_now(a.key for a in adds)
        if not all(a.holds_on(before.get(a.key, ZERO)) for a in adds):
            return AddResult(False, before)
        self.apply_now(adds)
        return AddResult(True, before)

    def apply_now(self, adds: Iterable[CounterAdd]) -> None:
        values, expiry = self.values, self._expiry
        for add in adds:
            values[add.key] = add.applied_to(values.get(add.key, ZERO))
            if add.expires_on > expiry.get(add.key, add.expires_on - dt.timedelta(days=1)):
                expiry[add.key] = add.expires_on

    async def snapshot(self, keys: Sequence[str]) -> dict[str, CounterValue]:
        return self.read_now(keys)

    async def check_and_add(self, adds: Sequence[CounterAdd]) -> AddResult:
        return self.check_and_add_now(adds)

    async def apply(self, adds: Sequence[CounterAdd]) -> None:
        self.apply_now(adds)

    async def purge_expired(self, today: dt.date) -> int:
        gone = [key for key, until in self._expiry.items() if until < today]
        for key in gone:
            del self._expiry[key]
            self.values.pop(key, None)
        return len(gone)


def adds_to_json(adds: Sequence[CounterAdd]) -> str:
    """A hold as JSON, to keep with the journal entry so a void or reversal
    releases exactly what was added (even after the ruleset changed)."""
    return json.dumps(
        [
            [a.key, a.amount_minor, a.txn_count, a.refunded_minor, a.at_s, a.expires_on.isoformat()]
            for a in adds
        ],
        separators=(",", ":"),
    )


def adds_from_json(text: str) -> tuple[CounterAdd, ...]:
    """The uncapped adds :func:`adds_to_json` wrote, keys in the current layout (a
    hold kept before migration 0033 gives back what it added to the migrated rows)."""
    return tuple(
        CounterAdd(
            current_key(str(k)), int(a), int(n), int(r), int(t), dt.date.fromisoformat(str(e))
        )
        for k, a, n, r, t, e in json.loads(text)
    )


def current_key(key: str) -> str:
    """A counter key in the current layout (``posp.risk.facts``): a key of the
    layout before migration 0033 (``c|<card>|d|<day>``, ``ct|<card>|<terminal>|…``,
    ``ctl|…``, ``ctm|…``, ``cn<hhmmhhmm>|…``, ``m|<merchant>|…``, ``tf|<terminal>|…``)
    translated, anything else unchanged.  Migration 0033 rewrites the stored
    rows by the same rules (a test holds the two to each other)."""
    parts = key.split("|")
    head, count = parts[0], len(parts)
    if head == "c" and count == 4:
        return f"c:{parts[1]}|{parts[2]}|{parts[3]}"
    if head == "m" and count == 4:
        return f"m:{parts[1]}|{parts[2]}|{parts[3]}"
    if head == "ct" and count == 5:
        return f"c:{parts[1]}|t:{parts[2]}|{parts[3]}|{parts[4]}"
    if head == "ctl" and count == 3:
        return f"c:{parts[1]}|t:{parts[2]}|l"
    if head == "ctm" and count == 4:
        return f"c:{parts[1]}|t:{parts[2]}|m|{parts[3]}"
    if head == "tf" and count == 3:
        return f"t:{parts[1]}|f|{parts[2]}"
    label = head[2:]  # cn<hhmmhhmm>: eight ASCII digits
    if (
        count == 3
        and head.startswith("cn")
        and len(label) == 8
        and label.isascii()
        and label.isdigit()
    ):
        return f"c:{parts[1]}|n{label}|{parts[2]}"
    return key
