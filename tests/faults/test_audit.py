"""The money audit's arithmetic on hand-made inputs: each kind of loss is counted
where it belongs, and a clean run reads clean."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.faults.audit import IssuerBooks, SwitchResidue, audit, classify_0420s
from tests.faults.procs import Fault

CARDS = [{"pan": "6225880000000000036", "balance_minor": "1000"}]
PAN = CARDS[0]["pan"]
T0 = dt.datetime(2026, 12, 3, 7, 0, tzinfo=dt.UTC)


def sale(trace: str, amount: int, event: str, approved: bool) -> list[dict[str, Any]]:
    purchase = {"ev": "purchase", "tid": "30000001", "trace": trace, "card": 0, "amount": amount}
    outcome = {
        "ev": "outcome", "tid": "30000001", "trace": trace, "kind": "purchase",
        "event": event, "sent": True, "answered": event == "response", "code": None,
        "approved": approved,
    }  # fmt: skip
    return [purchase, outcome]


def reversal(trace: str) -> dict[str, Any]:
    return {
        "ev": "outcome", "tid": "30000001", "trace": trace, "kind": "reversal",
        "event": "response", "sent": True, "answered": True, "code": "00", "approved": True,
    }  # fmt: skip


def test_a_debit_the_terminal_reversed_is_counted_to_the_fen() -> None:
    """Issue 12's shape: terminal timed out and reversed, the issuer kept the debit."""
    records = [*sale("000001", 101, "response", True), *sale("000002", 102, "timeout", False)]
    records.append(reversal("000002"))
    books = IssuerBooks({PAN: 1000 - 101 - 102}, {(PAN, 101): "approved", (PAN, 102): "approved"})
    report = audit(records, CARDS, books, [], [], SwitchResidue())
    assert report.cards_off == {0: -102}
    assert (report.debits_unapproved, report.approvals_lost) == (1, 0)
    assert report.reversals_answered == 1 and not report.clean


def test_an_approval_reversed_upstream_is_a_lost_approval() -> None:
    records = sale("000001", 101, "response", True)
    books = IssuerBooks({PAN: 1000}, {(PAN, 101): "reversed"})
    report = audit(records, CARDS, books, [], [], SwitchResidue())
    assert report.approvals_lost == 1 and report.cards_off == {0: 101}


def test_money_credited_beyond_the_issuer_states_is_a_double_reversal() -> None:
    records = [*sale("000001", 101, "timeout", False), reversal("000001")]
    books = IssuerBooks({PAN: 1000 + 101}, {(PAN, 101): "reversed"})
    report = audit(records, CARDS, books, [], [], SwitchResidue())
    assert report.reversals_applied_twice == 1 and report.cards_off == {0: 101}


def test_a_clean_run_reads_clean() -> None:
    records = [*sale("000001", 101, "response", True), *sale("000002", 102, "timeout", False)]
    records.append(reversal("000002"))
    books = IssuerBooks({PAN: 1000 - 101}, {(PAN, 101): "approved", (PAN, 102): "reversed"})
    report = audit(records, CARDS, books, [(T0, "k")], [], SwitchResidue({"approved": 1}))
    assert report.clean, report.summary()


def test_pending_entries_and_unreversed_purchases_are_not_clean() -> None:
    records = sale("000001", 101, "timeout", False)  # its 0400 never answered
    books = IssuerBooks({PAN: 1000}, {})
    report = audit(records, CARDS, books, [], [], SwitchResidue({"pending": 2}, 1, 1))
    assert report.reversals_unanswered == 1
    assert (report.unresolved_entries, report.saf_rows) == (3, 1)


def test_a_second_0420_is_a_duplicate_unless_a_fault_explains_it() -> None:
    """A repeat whose previous 0420 came just before a kill is a retransmission; a
    repeat with no fault near its previous 0420 is a duplicate."""

    def at(seconds: int) -> dt.datetime:
        return T0 + dt.timedelta(seconds=seconds)

    received = [(at(0), "a"), (at(2), "a"), (at(50), "b"), (at(20), "b")]
    faults = [Fault("switch1", "kill -9", T0 + dt.timedelta(seconds=1))]
    assert classify_0420s(received, faults) == (2, 1, 1)
    assert classify_0420s(received, []) == (2, 2, 0)
