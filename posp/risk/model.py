"""The ruleset file's schema (terminal-link.md §11): pydantic models, one per
rule kind, validated once at load and then compiled (``posp.risk.compile``).

Invariants:
* The set of rule kinds is fixed: a rule's ``kind`` picks its parameter model
  (a discriminated union), unknown keys are rejected everywhere, so a typo is an
  error that names the field, never a silently ignored setting.
* Every amount is in minor units (fen) and named ``*_minor``; every duration
  names its unit.  Decline codes are the §11 codes only.
* Rule ids are unique in a file; they label metrics and decisions, so they are
  short ``[a-z0-9_.-]`` words (a bounded label set).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class RiskCode(StrEnum):
    """The decline codes of terminal-link.md §11 (values are field 39)."""

    OVER_AMOUNT_LIMIT = "61"
    OVER_FREQUENCY_LIMIT = "65"
    SUSPECTED_FRAUD = "59"
    NOT_PERMITTED_TO_CARD = "57"
    TERMINAL_NOT_PERMITTED = "58"  # dormant, frozen or bound to another device
    FALLBACK_NOT_ALLOWED = "45"
    FRAUD_KEEP_CARD = "34"


class Action(StrEnum):
    DECLINE = "decline"  # the transaction is refused with the rule's code
    FLAG = "flag"  # approved, recorded for review
    SHADOW = "shadow"  # recorded as what the rule would have done; changes nothing


class ScopeKind(StrEnum):
    ALL = "all"
    MERCHANT_GROUP = "merchant_group"
    MCC = "mcc"
    MERCHANT = "merchant"
    TERMINAL = "terminal"


class Subject(StrEnum):
    """Whose transactions a velocity counter adds up."""

    CARD = "card"
    CARD_TERMINAL = "card_terminal"
    MERCHANT = "merchant"


class Window(StrEnum):
    DAY = "day"  # the business day (after ``business_day_rollover`` it is tomorrow's)
    WEEK = "week"  # the ISO week (Monday to Sunday) of the business day


_RULE_ID = r"^[a-z0-9][a-z0-9_.-]{0,47}$"
_TXN_TYPE = r"^[a-z_]{1,24}$"
Minor = Annotated[int, Field(ge=0, le=10**12 - 1)]  # an n12 amount
DEFAULT_TXN_TYPES = ("purchase", "preauth", "completion")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Strict):
    """Where a rule applies: everywhere, or to the listed groups/MCCs/merchants/terminals."""

    kind: ScopeKind = ScopeKind.ALL
    values: tuple[Annotated[str, Field(min_length=1, max_length=32)], ...] = ()

    @model_validator(mode="after")
    def _values_match_kind(self) -> Scope:
        if self.kind is ScopeKind.ALL and self.values:
            raise ValueError("scope 'all' takes no values")
        if self.kind is not ScopeKind.ALL and not self.values:
            raise ValueError(f"scope '{self.kind.value}' needs at least one value")
        return self


class _RuleBase(_Strict):
    id: Annotated[str, Field(pattern=_RULE_ID)]
    enabled: bool = True
    action: Action = Action.FLAG
    #: The decline code (a shadowed rule records it as the code it would have used);
    #: None takes the kind's default.
    code: RiskCode | None = None
    scope: Scope = Scope()
    txn_types: tuple[Annotated[str, Field(pattern=_TXN_TYPE)], ...] = DEFAULT_TXN_TYPES
    description: Annotated[str, Field(max_length=200)] = ""


class SingleAmountRule(_RuleBase):
    """One transaction's amount over a cap per transaction type (61)."""

    kind: Literal["single_amount"]
    max_minor: dict[Annotated[str, Field(pattern=_TXN_TYPE)], Minor]
    #: Also hold the amount under the terminal's TMS caps (F62 keys 37/38/39).
    use_tms_caps: bool = True


class VelocityRule(_RuleBase):
    """Amount and/or count of a subject's counted transactions in a window (61 / 65)."""

    kind: Literal["velocity"]
    subject: Subject
    window: Window
    max_amount_minor: Minor | None = None
    max_count: Annotated[int, Field(ge=0, le=10**9)] | None = None
    #: Refunds give the amount back (the cap is on debits minus refunds).
    net_of_refunds: bool = False

    @model_validator(mode="after")
    def _has_a_cap(self) -> VelocityRule:
        if self.max_amount_minor is None and self.max_count is None:
            raise ValueError("velocity rule needs max_amount_minor or max_count")
        return self


class IntervalRule(_RuleBase):
    """The same card on the same terminal again within ``min_interval_s`` (65)."""

    kind: Literal["interval"]
    min_interval_s: Annotated[int, Field(ge=1, le=86400 * 31)]


class PairMonthsRule(_RuleBase):
    """The same card on the same terminal in more than ``max_months`` calendar
    months running (65)."""

    kind: Literal["pair_months"]
    max_months: Annotated[int, Field(ge=1, le=24)]


class RoundAmountRule(_RuleBase):
    """An amount that is an exact multiple of ``unit_minor`` (10,000.00 by default) (59)."""

    kind: Literal["round_amount"]
    unit_minor: Annotated[int, Field(ge=100, le=10**11)] = 1_000_000


class OddAmountRule(_RuleBase):
    """A large amount with a fen part (49,999.99): at least ``min_amount_minor``
    and not a whole number of yuan (59)."""

    kind: Literal["odd_amount"]
    min_amount_minor: Minor = 500_000


class NightRule(_RuleBase):
    """Outside business hours: a single-amount cap and a per-card night total (59)."""

    kind: Literal["night"]
    business_start: dt.time = dt.time(9, 0)
    business_end: dt.time = dt.time(21, 0)
    max_single_minor: Minor | None = None
    max_card_night_minor: Minor | None = None

    @model_validator(mode="after")
    def _valid_window(self) -> NightRule:
        if self.business_start >= self.business_end:
            raise ValueError("business_start must be before business_end")
        if self.max_single_minor is None and self.max_card_night_minor is None:
            raise ValueError("night rule needs max_single_minor or max_card_night_minor")
        return self


class RegionRule(_RuleBase):
    """Terminal location or card BIN region differs from the merchant's region
    (F42 digits 4-7), compared on the first ``prefix_digits`` digits (59)."""

    kind: Literal["region"]
    prefix_digits: Annotated[int, Field(ge=1, le=4)] = 4
    check_terminal_location: bool = True
    check_card_region: bool = False
    #: BIN prefix -> region code, for cards whose issuing region is known.
    bin_regions: dict[Annotated[str, Field(pattern=r"^[0-9]{4,11}$")], str] = {}


class MerchantSpikeRule(_RuleBase):
    """A merchant's business-day amount over ``factor`` times its own trailing
    daily mean of ``baseline_days`` days (59)."""

    kind: Literal["merchant_spike"]
    factor: Annotated[float, Field(gt=1.0, le=1000.0)] = 5.0
    baseline_days: Annotated[int, Field(ge=1, le=60)] = 7
    #: Below this day total nothing is a spike (a new or small shop).
    min_amount_minor: Minor = 5_000_000


class FallbackRule(_RuleBase):
    """More than ``max_per_day`` chip-to-magstripe fallbacks on one terminal in a
    business day (45)."""

    kind: Literal["fallback"]
    max_per_day: Annotated[int, Field(ge=0, le=10**6)]


class BlockListRule(_RuleBase):
    """Listed card hashes or BIN prefixes (57)."""

    kind: Literal["block_list"]
    card_hashes: frozenset[Annotated[str, Field(pattern=r"^[0-9a-fA-F]{16,128}$")]] = frozenset()
    bins: frozenset[Annotated[str, Field(pattern=r"^[0-9]{4,11}$")]] = frozenset()


Rule = Annotated[
    SingleAmountRule
    | VelocityRule
    | IntervalRule
    | PairMonthsRule
    | RoundAmountRule
    | OddAmountRule
    | NightRule
    | RegionRule
    | MerchantSpikeRule
    | FallbackRule
    | BlockListRule,
    Field(discriminator="kind"),
]

#: The code a kind declines with when the rule names none (§11).
DEFAULT_CODES: dict[str, RiskCode] = {
    "single_amount": RiskCode.OVER_AMOUNT_LIMIT,
    "velocity": RiskCode.OVER_AMOUNT_LIMIT,  # a count cap uses 65, see compile
    "interval": RiskCode.OVER_FREQUENCY_LIMIT,
    "pair_months": RiskCode.OVER_FREQUENCY_LIMIT,
    "round_amount": RiskCode.SUSPECTED_FRAUD,
    "odd_amount": RiskCode.SUSPECTED_FRAUD,
    "night": RiskCode.SUSPECTED_FRAUD,
    "region": RiskCode.SUSPECTED_FRAUD,
    "merchant_spike": RiskCode.SUSPECTED_FRAUD,
    "fallback": RiskCode.FALLBACK_NOT_ALLOWED,
    "block_list": RiskCode.NOT_PERMITTED_TO_CARD,
}


class RulesetFile(_Strict):
    """A whole ruleset: its version, calendar and counted types, and its rules in order
    (the first declining rule gives the answer's code)."""

    version: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.:-]+$")]
    #: From this local time on, a transaction belongs to the next business day.
    business_day_rollover: dt.time = dt.time(21, 0)
    #: Transaction types added to (and checked against) the velocity counters.
    counted_txn_types: tuple[Annotated[str, Field(pattern=_TXN_TYPE)], ...] = (
        "purchase",
        "completion",
    )
    rules: tuple[Rule, ...] = ()

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears twice")
            seen.add(rule.id)
        return rules
