"""The ``[risk]`` settings section (``POSP_RISK__…``).

Invariants: the defaults work out of the box (the shipped ruleset, rules on);
a path that does not load is a ConfigError at start, never a switch without
rules.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from posp.risk.lifecycle import DEFAULT_DORMANT_AFTER_DAYS


class RiskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Run the risk rules at all (false: no risk step, counters untouched).
    enabled: bool = True
    #: The ruleset file (TOML); None = the shipped default (posp/risk/default_ruleset.toml).
    ruleset_path: Path | None = None
    #: A terminal without an approved transaction for this many days answers 58.
    dormant_after_days: int = Field(default=DEFAULT_DORMANT_AFTER_DAYS, ge=1, le=3650)
    #: How often expired velocity-counter rows are deleted and counters written by an
    #: older version looked for (``check_counter_layout``), also at start; 0 = never.
    purge_interval_s: float = Field(default=3600.0, ge=0)
