"""The money audit: what the terminals saw against what the issuer booked, read
from neither the switch's journal nor its logs.

Inputs: the terminals' JSON-lines log (:mod:`tests.faults.driver`), the issuer's
SQLite ledger (read after it stopped), the issuer's log (one line per 0420
received), the faults injected, and — only for "nothing left pending" — the
switch's store (journal states and the SAF queue).

Invariants (what each count means):

* ``cards_off``: cards whose issuer balance differs from the opening balance minus
  the purchases their terminals saw approved (reversals never touch an approved
  purchase here: an approval clears the terminal's pending reversal).
* ``approvals_lost``: purchases a terminal saw approved that the issuer does not
  hold as approved.  ``debits_unapproved``: purchases the issuer holds as approved
  that no terminal saw approved (the issue's −83,037.49 CNY shape).
* ``reversals_applied_twice``: cards credited beyond what the issuer's own
  transaction states explain (money moved back more than once).
* ``duplicate_0420s``: 0420s for an original beyond its first, except a repeat that
  follows a fault within :data:`RETRY_WINDOW_S` of the previous one (a switch or
  HSM killed before the 0430 was recorded must send again: counted apart as
  ``repeats_after_fault``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg

from tests.faults.procs import Fault

#: Journal states that are not an outcome (the switch has yet to resolve them).
UNRESOLVED_STATES: Final = frozenset({"pending"})
#: A repeated 0420 this soon after a fault is a retransmission, not a second reversal.
RETRY_WINDOW_S: Final = 10.0
_REVERSAL_LINE: Final = re.compile(r"^(\S+)\s.*issuer_reversal_received.*original='?([0-9/]+)")


@dataclass
class TerminalPurchase:
    tid: str
    trace: str
    card: int
    amount_minor: int
    approved: bool = False
    needs_reversal: bool = False  # sent, and no answer the terminal could accept
    reversal_attempts: int = 0  # 0400s tried (some may not have left: no connection)
    reversal_answered: bool = False


def terminal_purchases(records: list[dict[str, Any]]) -> dict[tuple[str, str], TerminalPurchase]:
    """Every purchase sent, with whether the terminal saw it approved and whether
    its 0400 (if any) was answered."""
    purchases: dict[tuple[str, str], TerminalPurchase] = {}
    for record in records:
        key = (record["tid"], record["trace"])
        if record["ev"] == "purchase":
            purchases[key] = TerminalPurchase(*key, record["card"], record["amount"])
        elif record["ev"] == "outcome" and key in purchases:
            purchase = purchases[key]
            if record["kind"] == "purchase":
                purchase.approved = bool(record["approved"])
                purchase.needs_reversal = record["sent"] and record["event"] != "response"
            elif record["kind"] == "reversal":
                purchase.reversal_attempts += 1
                purchase.reversal_answered |= bool(record["answered"])
    return purchases


@dataclass(frozen=True, slots=True)
class IssuerBooks:
    balances: dict[str, int]  # PAN → balance_minor
    purchases: dict[tuple[str, int], str]  # (PAN, amount) → state


def read_issuer_books(db_path: Path) -> IssuerBooks:
    """The issuer's accounts and purchase states from its SQLite file (issuer stopped)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        balances = dict(conn.execute("SELECT pan, balance_minor FROM accounts").fetchall())
        rows = conn.execute("SELECT pan, amount_minor, state FROM txns WHERE kind = 'purchase'")
        purchases = {(pan, amount): state for pan, amount, state in rows}
    return IssuerBooks(balances, purchases)


def read_reversal_lines(logs: list[Path]) -> list[tuple[dt.datetime, str]]:
    """(time received, original key) of every 0420 the issuer logged."""
    seen = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            match = _REVERSAL_LINE.match(line)
            if match:
                at = dt.datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
                seen.append((at, match.group(2)))
    return seen


def classify_0420s(
    received: list[tuple[dt.datetime, str]], faults: list[Fault]
) -> tuple[int, int, int]:
    """(originals reversed upstream, duplicate 0420s, repeats after a fault)."""
    by_original: dict[str, list[dt.datetime]] = defaultdict(list)
    for at, original in received:
        by_original[original].append(at)
    duplicates = repeats = 0
    window = dt.timedelta(seconds=RETRY_WINDOW_S)
    for times in by_original.values():
        times.sort()
        for previous in times[:-1]:  # each repeat, judged by the 0420 before it
            if any(previous - dt.timedelta(seconds=1) <= f.at <= previous + window for f in faults):
                repeats += 1
            else:
                duplicates += 1
    return len(by_original), duplicates, repeats


@dataclass
class SwitchResidue:
    """What the switch's store still has to resolve."""

    states: dict[str, int] = field(default_factory=dict)
    saf_rows: int = 0  # 0420s not delivered yet
    kept_0400s: int = 0  # terminal 0400s waiting for the HSM to check their MAC
    samples: list[str] = field(default_factory=list)  # a few unresolved entries, for a report
    #: Refunds and voids that ended not approved and still hold their reservation
    #: in their original (given back right after the state change, or by the sweep).
    reservations_held: int = 0

    @property
    def unresolved(self) -> int:
        pending = sum(n for state, n in self.states.items() if state in UNRESOLVED_STATES)
        return pending + self.kept_0400s + self.reservations_held

    @property
    def settled(self) -> bool:
        return self.unresolved == 0 and self.saf_rows == 0


_STATES_SQL: Final = "SELECT state, COUNT(*) FROM journal GROUP BY state"
_SAF_SQL: Final = "SELECT COUNT(*) FROM saf"
_KEPT_SQL: Final = "SELECT COUNT(*) FROM deferred_reversals"
#: The states the store's sweep gives reservations back from (its partial index
#: ``journal_stranded_reservations``, migration 0032).
_HELD_SQL: Final = (
    "SELECT COUNT(*) FROM journal WHERE reserved_minor > 0"
    " AND state IN ('declined', 'timed_out', 'reversed')"
)
_SAMPLE_SQL: Final = (
    "SELECT id, terminal_id, trace, txn_type, direction, mti, network_stan, node_id, created_at"
    " FROM journal WHERE state = 'pending' ORDER BY id LIMIT 5"
)


def _residue_queries(saf_columns: set[str], tables: set[str]) -> tuple[str, str | None]:
    """The SAF and kept-0400 counts for this schema.  Since issue 12 delivered 0420s
    stay in the queue (one per original, ever) and only undelivered ones count; the
    schema before it deleted them.  Both are read so the audit runs on either."""
    saf = _SAF_SQL + (" WHERE delivered_at IS NULL" if "delivered_at" in saf_columns else "")
    return saf, _KEPT_SQL if "deferred_reversals" in tables else None


def _read_sqlite_residue(path: str) -> SwitchResidue:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        columns = {row[0] for row in conn.execute("SELECT name FROM pragma_table_info('saf')")}
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        saf_sql, kept_sql = _residue_queries(columns, tables)
        journal = {row[0] for row in conn.execute("SELECT name FROM pragma_table_info('journal')")}
        states = dict(conn.execute(_STATES_SQL).fetchall())
        saf = conn.execute(saf_sql).fetchone()[0]
        kept = conn.execute(kept_sql).fetchone()[0] if kept_sql else 0
        samples = [str(row) for row in conn.execute(_SAMPLE_SQL)]
        held = conn.execute(_HELD_SQL).fetchone()[0] if "reserved_minor" in journal else 0
    return SwitchResidue(states, saf, kept, samples, held)


async def connect_store_schema(store_url: str) -> asyncpg.Connection:
    """A connection to a PostgreSQL store URL's database, searching its ``schema``."""
    parts = urllib.parse.urlsplit(store_url)
    query = urllib.parse.parse_qs(parts.query)
    schema = query.pop("schema", ["public"])[0]
    dsn = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, True)))
    return await asyncpg.connect(dsn, server_settings={"search_path": schema})


async def _read_pg_residue(store_url: str) -> SwitchResidue:
    conn = await connect_store_schema(store_url)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        )
        saf_sql, kept_sql = _residue_queries(
            {r[1] for r in columns if r[0] == "saf"}, {r[0] for r in columns}
        )
        states = {r[0]: r[1] for r in await conn.fetch(_STATES_SQL)}
        saf = int(await conn.fetchval(saf_sql))
        kept = int(await conn.fetchval(kept_sql)) if kept_sql else 0
        samples = [str(tuple(row)) for row in await conn.fetch(_SAMPLE_SQL)]
        reserving = any(r[0] == "journal" and r[1] == "reserved_minor" for r in columns)
        held = int(await conn.fetchval(_HELD_SQL)) if reserving else 0
        return SwitchResidue(states, saf, kept, samples, held)
    finally:
        await conn.close()


async def read_switch_residue(store_url: str) -> SwitchResidue:
    """Journal states, waiting 0420s, kept 0400s and reservations still held by
    ended refunds and voids, read straight from the tables."""
    if store_url.startswith("sqlite:///"):
        return await asyncio.to_thread(_read_sqlite_residue, store_url[len("sqlite:///") :])
    return await _read_pg_residue(store_url)


async def wait_switch_settled(store_url: str, timeout_s: float) -> SwitchResidue:
    """Poll the store until the SAF queue is empty and nothing is unresolved, or
    ``timeout_s`` passes; the last reading either way (the audit reports it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        residue = await read_switch_residue(store_url)
        if residue.settled or loop.time() > deadline:
            return residue
        await asyncio.sleep(0.25)


@dataclass
class AuditReport:
    purchases: int = 0
    approved_seen: int = 0
    reversal_attempts: int = 0
    reversals_answered: int = 0  # purchases whose 0400 got a 0410
    reversals_unanswered: int = 0
    cards_off: dict[int, int] = field(default_factory=dict)  # card index → fen
    approvals_lost: int = 0
    debits_unapproved: int = 0
    reversals_applied_twice: int = 0
    originals_reversed_upstream: int = 0
    duplicate_0420s: int = 0
    repeats_after_fault: int = 0
    unresolved_entries: int = 0
    saf_rows: int = 0
    unresolved_samples: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)

    @property
    def clean(self) -> bool:
        """The issue's bar: nothing off, lost, doubled, duplicated or left pending."""
        return not (
            self.cards_off
            or self.approvals_lost
            or self.debits_unapproved
            or self.reversals_applied_twice
            or self.duplicate_0420s
            or self.unresolved_entries
            or self.saf_rows
            or self.reversals_unanswered
        )

    def summary(self) -> str:
        off_fen = sum(self.cards_off.values())
        return (
            f"purchases={self.purchases} approved={self.approved_seen} "
            f"0400s={self.reversals_answered} answered/{self.reversal_attempts} tried "
            f"unanswered={self.reversals_unanswered} "
            f"faults={dict(self.faults)} | cards_off={len(self.cards_off)} "
            f"({off_fen / 100:+.2f} CNY) approvals_lost={self.approvals_lost} "
            f"debits_unapproved={self.debits_unapproved} "
            f"reversals_applied_twice={self.reversals_applied_twice} "
            f"0420_originals={self.originals_reversed_upstream} "
            f"duplicate_0420s={self.duplicate_0420s} repeats_after_fault="
            f"{self.repeats_after_fault} unresolved={self.unresolved_entries} "
            f"saf_rows={self.saf_rows}"
            + "".join(f"\n  unresolved: {sample}" for sample in self.unresolved_samples)
        )


def audit(
    records: list[dict[str, Any]],
    cards: list[dict[str, str]],
    books: IssuerBooks,
    received_0420s: list[tuple[dt.datetime, str]],
    faults: list[Fault],
    residue: SwitchResidue,
) -> AuditReport:
    """Compare terminals and issuer (see the module docstring)."""
    purchases = terminal_purchases(records)
    report = AuditReport(purchases=len(purchases), faults=Counter(f.target for f in faults))
    pans = [c["pan"] for c in cards]
    expected = {pan: int(c["balance_minor"]) for pan, c in zip(pans, cards, strict=True)}
    implied = dict(expected)
    seen_approved: set[tuple[str, int]] = set()
    for purchase in purchases.values():
        key = (pans[purchase.card], purchase.amount_minor)
        report.reversal_attempts += purchase.reversal_attempts
        report.reversals_answered += purchase.reversal_answered
        if purchase.needs_reversal and not purchase.reversal_answered:
            report.reversals_unanswered += 1
        if purchase.approved:
            report.approved_seen += 1
            seen_approved.add(key)
            expected[key[0]] -= purchase.amount_minor
            if books.purchases.get(key) != "approved":
                report.approvals_lost += 1
    for (pan, amount), state in books.purchases.items():
        if state == "approved":
            implied[pan] -= amount
            if (pan, amount) not in seen_approved:
                report.debits_unapproved += 1
    for index, pan in enumerate(pans):
        actual = books.balances[pan]
        if actual != expected[pan]:
            report.cards_off[index] = actual - expected[pan]
        if actual > implied[pan]:
            report.reversals_applied_twice += 1
    originals, duplicates, repeats = classify_0420s(received_0420s, faults)
    report.originals_reversed_upstream = originals
    report.duplicate_0420s, report.repeats_after_fault = duplicates, repeats
    report.unresolved_entries, report.saf_rows = residue.unresolved, residue.saf_rows
    report.unresolved_samples = residue.samples
    return report
