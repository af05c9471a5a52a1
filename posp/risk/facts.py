"""The calendar and counter keys of one transaction, computed once per
evaluation and shared by every rule's closure.

Invariants:
* A counter key names its subject and window only (``c|<hash>|d|2026-12-03``),
  never a rule: two rules on the card's day share one counter, so the number
  of counters a transaction touches does not grow with the number of rules.
* The business day of a local time at or after ``rollover`` is the next
  calendar day (``rollover`` 00:00 means no rollover); weeks are ISO weeks of
  the business day; months are calendar months of the business day.
* Every key carries an expiry date so old windows can be purged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from posp.risk.inputs import ZERO, CounterSnapshot, CounterValue, RiskInput

#: Counter rows outlive their window by this much (the longest look-back is a
#: 60-day spike baseline; a 24-month pair run reads month rows, kept 25 months).
KEEP_DAYS = 62
KEEP_MONTH_DAYS = 25 * 31
_ONE_DAY = dt.timedelta(days=1)


def business_day(local_time: dt.datetime, rollover: dt.time) -> dt.date:
    """The business day a local time belongs to."""
    day = local_time.date()
    if rollover != dt.time(0, 0) and local_time.time() >= rollover:
        return day + _ONE_DAY
    return day


def week_label(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}W{week:02d}"


def month_label(day: dt.date, back: int = 0) -> str:
    index = day.year * 12 + day.month - 1 - back
    return f"{index // 12}{index % 12 + 1:02d}"


def is_night(clock: dt.time, business_start: dt.time, business_end: dt.time) -> bool:
    return clock < business_start or clock >= business_end


@dataclass(frozen=True, slots=True)
class Feed:
    """What an approved transaction adds to one counter."""

    key: str
    amount_minor: int
    count: int
    at_s: int
    expires_on: dt.date


class Facts:
    """Derived values of one input; keys are built on first use and kept."""

    __slots__ = ("_months", "bday", "card", "inp", "snapshot", "terminal_pair")

    def __init__(self, inp: RiskInput, rollover: dt.time, snapshot: CounterSnapshot) -> None:
        self.inp = inp
        self.snapshot = snapshot
        self.bday = business_day(inp.local_time, rollover)
        self.card = inp.card_hash
        self.terminal_pair = f"{inp.card_hash}|{inp.terminal_id}"
        self._months: dict[int, str] = {}

    def value(self, key: str) -> CounterValue:
        return self.snapshot.get(key, ZERO)

    # --- keys ---------------------------------------------------------------------
    def window_key(self, subject: str, window: str) -> str:
        """The counter of ``subject`` (card / card_terminal / merchant) in ``window``."""
        who = (
            self.card
            if subject == "card"
            else self.terminal_pair
            if subject == "card_terminal"
            else self.inp.merchant_id
        )
        when = self.bday.isoformat() if window == "day" else week_label(self.bday)
        return f"{subject[0]}{'t' if subject == 'card_terminal' else ''}|{who}|{window[0]}|{when}"

    def merchant_day_key(self, back_days: int = 0) -> str:
        day = self.bday - dt.timedelta(days=back_days)
        return f"m|{self.inp.merchant_id}|d|{day.isoformat()}"

    def last_use_key(self) -> str:
        return f"ctl|{self.terminal_pair}"

    def pair_month_key(self, back_months: int = 0) -> str:
        label = self._months.get(back_months)
        if label is None:
            label = self._months[back_months] = month_label(self.bday, back_months)
        return f"ctm|{self.terminal_pair}|{label}"

    def night_key(self, window: str) -> str:
        return f"cn{window}|{self.card}|{self.bday.isoformat()}"

    def fallback_key(self) -> str:
        return f"tf|{self.inp.terminal_id}|{self.bday.isoformat()}"

    # --- feeds ----------------------------------------------------------------------
    def feed(self, key: str, *, amount: bool = True, keep_days: int = KEEP_DAYS) -> Feed:
        return Feed(
            key,
            self.inp.amount_minor if amount else 0,
            1,
            self.inp.local_s,
            self.bday + dt.timedelta(days=keep_days),
        )
