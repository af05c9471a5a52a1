"""Hot reload: the holder of the current compiled ruleset.

A request takes ``holder.current`` ONCE when its risk step starts and uses that
object for its keys, evaluation and any refusal, so a swap in the middle never
mixes two versions inside one decision; requests already running keep the
version they started with, later ones get the new one, and each decision
records its version (both are visible in the decision log around a swap).

Invariants:
* ``swap`` is one attribute assignment on the event loop's thread: atomic for
  every reader, no lock on the hot path.
* A candidate that does not load (bad file) never replaces the current
  ruleset: ``reload`` logs the reason and keeps serving the old one.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from posp.log import get_logger
from posp.risk.engine import CompiledRuleset
from posp.risk.ruleset import RulesetError, load_ruleset

_log = get_logger("posp.risk.reload")


@dataclass(frozen=True, slots=True)
class Swap:
    old_version: str
    new_version: str
    at: dt.datetime


class RulesetHolder:
    """The ruleset in force, swappable while requests are being evaluated."""

    def __init__(self, ruleset: CompiledRuleset, path: str | Path | None = None) -> None:
        self._current = ruleset
        self.path = path
        self.swaps: deque[Swap] = deque(maxlen=20)

    @property
    def current(self) -> CompiledRuleset:
        return self._current

    def swap(self, ruleset: CompiledRuleset) -> CompiledRuleset:
        """Put ``ruleset`` in force; returns the one it replaced."""
        old, self._current = self._current, ruleset
        self.swaps.append(Swap(old.version, ruleset.version, dt.datetime.now(dt.UTC)))
        _log.info("risk ruleset swapped", old_version=old.version, new_version=ruleset.version)
        return old

    def reload(self) -> bool:
        """Load ``path`` again (SIGHUP); False, with the reason logged, if it does
        not load — the current ruleset stays."""
        try:
            candidate = load_ruleset(self.path)
        except RulesetError as exc:
            _log.error("risk ruleset not reloaded", reason=str(exc), version=self._current.version)
            return False
        self.swap(candidate)
        return True
