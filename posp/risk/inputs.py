"""What the risk engine reads and what it answers: plain frozen dataclasses, so
an evaluation is a pure function of (input, counter snapshot) and the pipeline
can build the input from whatever it parsed (F42, F59 A2, the registry).

Invariants:
* A card appears only as its keyed PAN hash and its BIN (first 6-8 digits);
  the PAN itself never enters this package.
* A :class:`Decision`'s ``triggered`` holds short, bounded, masked values
  (amounts, counts, region codes, a hash prefix), never a full card hash.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from posp.risk.model import Action, RiskCode
from posp.txn import CAP_BY_NAME, CapKind

#: Local time is turned into whole seconds on this epoch (the acquirer's wall clock,
#: not UTC: intervals between two local times are what the rules measure).
LOCAL_EPOCH = dt.datetime(2000, 1, 1)


@dataclass(frozen=True, slots=True)
class TmsCaps:
    """The terminal's single-transaction caps from its TMS parameters (F62 37/38/39)."""

    purchase_minor: int | None = None
    refund_minor: int | None = None
    transfer_minor: int | None = None

    def for_type(self, txn_type: str) -> int | None:
        """The cap of the type named ``txn_type``: the one its row in the
        transaction table names (``posp.txn``, the switch's caps step reads the
        same), None for a type no terminal cap limits."""
        kind = CAP_BY_NAME.get(txn_type)
        if kind is CapKind.PURCHASE:
            return self.purchase_minor
        if kind is CapKind.REFUND:
            return self.refund_minor
        if kind is CapKind.TRANSFER:
            return self.transfer_minor
        return None


@dataclass(frozen=True, slots=True)
class RiskInput:
    """One transaction as the risk rules see it."""

    txn_type: str  # the routes table's name: purchase, refund, preauth, ...
    amount_minor: int
    card_hash: str  # the journal's keyed PAN hash (hex)
    bin: str  # leading PAN digits (6-8)
    terminal_id: str
    merchant_id: str
    mcc: str
    local_time: dt.datetime  # the terminal's local date and time (naive)
    currency: str = "156"
    merchant_group: str = ""
    merchant_region: str = ""  # "" = F42 digits 4-7 (merchant_region_of)
    terminal_region: str = ""  # from F59 A2/07, "" when unknown
    hardware_serial: str = ""  # F59 A2/02 (TUSN)
    sim_iccid: str = ""  # F59 A2/06
    entry_mode: str = ""  # F22
    fallback: bool = False  # chip card read by magstripe after a chip failure
    tms_caps: TmsCaps = TmsCaps()

    @property
    def region(self) -> str:
        return self.merchant_region or merchant_region_of(self.merchant_id)

    @property
    def local_s(self) -> int:
        return int((self.local_time - LOCAL_EPOCH).total_seconds())


def merchant_region_of(merchant_id: str) -> str:
    """The merchant's region code: F42 digits 4-7 ("" when F42 is shorter)."""
    region = merchant_id[3:7]
    return region if len(region) == 4 and region.isdigit() else ""


class CounterValue(NamedTuple):
    amount_minor: int = 0
    txn_count: int = 0
    refunded_minor: int = 0
    last_at_s: int = 0  # local seconds (LOCAL_EPOCH) of the latest counted use; 0 = never


ZERO = CounterValue()
CounterSnapshot = Mapping[str, CounterValue]
EMPTY_SNAPSHOT: CounterSnapshot = MappingProxyType({})


class Decision(NamedTuple):
    """One rule's verdict on one transaction (a NamedTuple: cheap to build on
    the hot path, immutable, and JSON-ready through :meth:`as_record`)."""

    rule_id: str
    ruleset_version: str
    kind: str
    action: Action
    code: RiskCode  # what a decline answers (for flag/shadow: what it would have answered)
    triggered: Mapping[str, str] = MappingProxyType({})

    def as_record(self) -> dict[str, object]:
        """A JSON-ready form for the journal and the decision log."""
        return {
            "rule": self.rule_id,
            "version": self.ruleset_version,
            "kind": self.kind,
            "action": self.action.value,
            "code": self.code.value,
            "triggered": dict(self.triggered),
        }


def masked_hash(card_hash: str) -> str:
    """Enough of a card hash to tell cards apart in a review, not to match a journal."""
    return card_hash[:8] + "…"
