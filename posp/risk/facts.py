"""The calendar and counter keys of one transaction, computed once per
evaluation and shared by every rule's closure.

Invariants:
* A counter key names its subject and window only (``c:<hash>|d|2026-12-03``),
  never a rule: two rules on the card's day share one counter, so the number
  of counters a transaction touches does not grow with the number of rules.
  Rules declare the :class:`Family` of counters they use; the ruleset reads
  and feeds each family once.
* Keys begin with their subject, and a card-on-terminal key with its card's
  (the layout below).  Counters are read and written by key, so a card's day,
  week, night and card-on-terminal rows sit next to each other in the store's
  key order (SQLite keeps the counters in their key's B-tree): a repeat
  purchase's hold dirties about two table pages, its card's and its
  merchant's, where a layout by family first dirtied five.  Keys of that
  layout (``c|<hash>|d|…``, ``ct|…``, ``ctl|…``) are translated by
  :func:`posp.risk.counters.current_key` and, in the store, by migration 0033.
* The business day of a local time at or after ``rollover`` is the next
  calendar day (``rollover`` 00:00 means no rollover); weeks are ISO weeks of
  the business day; months are calendar months of the business day.
* Every key carries an expiry date so old windows can be purged.

Key layout (``<day>`` an ISO date, ``<week>`` ``2026W49``, ``<month>`` ``202612``)::

    c:<card>|d|<day>                    card per business day (|w|<week>: per week)
    c:<card>|n<hhmmhhmm>|<day>          card's uses in a night window per business day
    c:<card>|t:<terminal>|d|<day>       card on terminal per day (|w|<week>: per week)
    c:<card>|t:<terminal>|l             card on terminal: last use
    c:<card>|t:<terminal>|m|<month>     card on terminal per month
    m:<merchant>|d|<day>                merchant per day (|w|<week>: per week)
    t:<terminal>|f|<day>                fallback uses on a terminal per day
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import NamedTuple

from posp.risk.inputs import ZERO, CounterSnapshot, CounterValue, RiskInput

#: Counter rows outlive their window by this much (the longest look-back is a
#: 60-day spike baseline; a 24-month pair run reads month rows, kept 25 months).
KEEP_DAYS = 62
KEEP_MONTH_DAYS = 25 * 31
_ONE_DAY = dt.timedelta(days=1)
#: Key prefix of each velocity subject (the family's ``prefix``, not the key text).
SUBJECT_PREFIX = {"card": "c", "card_terminal": "ct", "merchant": "m"}


def card_subject(card_hash: str) -> str:
    """The start of every key of a card (its card-on-terminal keys too)."""
    return f"c:{card_hash}"


def pair_subject(card_hash: str, terminal_id: str) -> str:
    """The start of every key of a card on a terminal."""
    return f"{card_subject(card_hash)}|t:{terminal_id}"


def merchant_subject(merchant_id: str) -> str:
    return f"m:{merchant_id}"


def terminal_subject(terminal_id: str) -> str:
    return f"t:{terminal_id}"


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


class Family(NamedTuple):
    """A kind of counter a rule uses.  ``name`` is one of: ``window`` (a
    subject's day or week, ``prefix`` + ``window`` "d"/"w"), ``last_use`` (card on
    terminal), ``pair_month`` (card on terminal per month, ``depth`` months back),
    ``night`` (card per business day outside ``start``-``end``), ``fallback``
    (terminal per day), ``merchant_days`` (merchant per day, ``depth`` days back)."""

    name: str
    prefix: str = ""
    window: str = ""
    depth: int = 0
    start: dt.time = dt.time(0)
    end: dt.time = dt.time(0)


class Feed(NamedTuple):
    """What an approved transaction adds to one counter (and one use)."""

    key: str
    amount_minor: int
    at_s: int
    expires_on: dt.date


class Calendar(NamedTuple):
    """The labels of one business day, shared by all of that day's transactions."""

    day: str
    week: str
    days_back: tuple[str, ...]  # ISO dates from the day back KEEP_DAYS - 2 days
    months_back: tuple[str, ...]  # YYYYMM from the day's month back 24 months
    expires_on: dt.date
    month_expires_on: dt.date


@functools.lru_cache(maxsize=32)
def calendar(bday: dt.date) -> Calendar:
    return Calendar(
        bday.isoformat(),
        week_label(bday),
        tuple((bday - dt.timedelta(days=back)).isoformat() for back in range(KEEP_DAYS - 1)),
        tuple(month_label(bday, back) for back in range(25)),
        bday + dt.timedelta(days=KEEP_DAYS),
        bday + dt.timedelta(days=KEEP_MONTH_DAYS),
    )


@functools.lru_cache(maxsize=32)
def night_label(start: dt.time, end: dt.time) -> str:
    return f"{start.hour:02d}{start.minute:02d}{end.hour:02d}{end.minute:02d}"


class Facts:
    """Derived values of one input; keys are built on first use and kept."""

    __slots__ = (
        "_runs",
        "bday",
        "cal",
        "card_lower",
        "clock",
        "day",
        "inp",
        "keys",
        "local_s",
        "pair",
        "region",
        "snapshot",
    )

    def __init__(self, inp: RiskInput, rollover: dt.time, snapshot: CounterSnapshot) -> None:
        self.inp = inp
        self.snapshot = snapshot
        self.bday = business_day(inp.local_time, rollover)
        self.cal = calendar(self.bday)
        self.day = self.cal.day
        self.pair = pair_subject(inp.card_hash, inp.terminal_id)
        self.clock = inp.local_time.time()
        self.local_s = inp.local_s
        self.region = inp.region  # the merchant's (F42 digits 4-7 unless given)
        self.card_lower = inp.card_hash.lower()
        #: Window keys by name ("cd", "ctw", "md", ...), built on first use.
        self.keys: dict[str, str] = {}
        self._runs: dict[tuple[str, int], tuple[str, ...]] = {}

    @property
    def expires_on(self) -> dt.date:
        return self.cal.expires_on

    def value(self, key: str) -> CounterValue:
        return self.snapshot.get(key, ZERO)

    # --- keys ---------------------------------------------------------------------
    def window_key(self, prefix: str, window: str) -> str:
        """The counter of a subject (``prefix`` c / ct / m) in a window (d / w)."""
        name = prefix + window
        key = self.keys.get(name)
        if key is None:
            if prefix == "c":
                who = card_subject(self.inp.card_hash)
            elif prefix == "ct":
                who = self.pair
            else:
                who = merchant_subject(self.inp.merchant_id)
            when = self.day if window == "d" else self.cal.week
            key = self.keys[name] = f"{who}|{window}|{when}"
        return key

    def merchant_day_key(self, back_days: int = 0) -> str:
        return self.merchant_days(back_days)[back_days]

    def last_use_key(self) -> str:
        key = self.keys.get("ctl")
        if key is None:
            key = self.keys["ctl"] = f"{self.pair}|l"
        return key

    def pair_month_key(self, back_months: int = 0) -> str:
        return self.pair_months(back_months)[back_months]

    def night_key(self, start: dt.time, end: dt.time) -> str:
        return f"{card_subject(self.inp.card_hash)}|n{night_label(start, end)}|{self.day}"

    def fallback_key(self) -> str:
        key = self.keys.get("tf")
        if key is None:
            key = self.keys["tf"] = f"{terminal_subject(self.inp.terminal_id)}|f|{self.day}"
        return key

    def is_night(self, start: dt.time, end: dt.time) -> bool:
        return is_night(self.clock, start, end)

    def merchant_days(self, depth: int) -> tuple[str, ...]:
        """The merchant's day counters from today back ``depth`` days."""
        run = self._runs.get(("m", depth))
        if run is None:
            merchant = merchant_subject(self.inp.merchant_id)
            days = self.cal.days_back[: depth + 1]
            run = self._runs["m", depth] = tuple(f"{merchant}|d|{day}" for day in days)
        return run

    def pair_months(self, depth: int) -> tuple[str, ...]:
        """The card-on-terminal month counters from this month back ``depth`` months."""
        run = self._runs.get(("p", depth))
        if run is None:
            pair = self.pair
            months = self.cal.months_back[: depth + 1]
            run = self._runs["p", depth] = tuple(f"{pair}|m|{month}" for month in months)
        return run

    # --- families -------------------------------------------------------------------
    def reads(self, family: Family) -> tuple[str, ...]:
        """The counters of ``family`` a check may look at for this input."""
        name = family.name
        if name == "window":
            return (self.window_key(family.prefix, family.window),)
        if name == "merchant_days":
            return self.merchant_days(family.depth)
        if name == "pair_month":
            return self.pair_months(family.depth)
        if name == "last_use":
            return (self.last_use_key(),)
        if name == "night":
            return (self.night_key(family.start, family.end),) if self._night(family) else ()
        if name == "fallback":
            return (self.fallback_key(),) if self.inp.fallback else ()
        raise ValueError(f"unknown counter family {name}")

    def _night(self, family: Family) -> bool:
        return self.is_night(family.start, family.end)

    def fed(self, family: Family) -> tuple[tuple[str, int], ...]:
        """The counters of ``family`` an approved, counted transaction feeds, each
        with the amount it adds (one use each)."""
        name = family.name
        if name == "window":
            return ((self.window_key(family.prefix, family.window), self.inp.amount_minor),)
        if name == "merchant_days":
            return ((self.window_key("m", "d"), self.inp.amount_minor),)
        if name == "pair_month":
            return ((self.pair_months(family.depth)[0], 0),)
        amount = self.inp.amount_minor if name == "night" else 0
        return tuple([(key, amount) for key in self.reads(family)])

    def fed_amounts(self, families: tuple[Family, ...]) -> dict[str, int]:
        """:meth:`fed` over ``families`` by key, the first family feeding a key
        deciding its amount (as in the hold; each use is at ``local_s``).  The
        backtest's replay feeds from this: no Feed tuples built."""
        amounts: dict[str, int] = {}
        for family in families:
            for key, amount in self.fed(family):
                amounts.setdefault(key, amount)
        return amounts

    def feeds(self, family: Family) -> tuple[Feed, ...]:
        """What an approved, counted transaction adds to ``family``'s counters:
        :meth:`fed` with the use's time and each counter's expiry."""
        fed = self.fed(family)
        keep = self.cal.month_expires_on if family.name == "pair_month" else self.cal.expires_on
        if len(fed) == 1:
            key, amount = fed[0]
            return (Feed(key, amount, self.local_s, keep),)
        return tuple([Feed(key, amount, self.local_s, keep) for key, amount in fed])
