"""Issuer ledger decisions (pure): statuses, limits, holds, voids, reversals."""

from __future__ import annotations

import pytest

from issuer_sim.ledger import Account, Ledger, Request

TODAY = "20261121"


def ledger(**account: object) -> Ledger:
    book = Ledger()
    values: dict[str, object] = {
        "pan": "6225880000000000036", "expiry": "3012", "status": "active", "pvv": "1234",
        "balance_minor": 10_000, "daily_limit_minor": 8_000, "card_org": "CUP",
    }  # fmt: skip
    values.update(account)
    book.put_account(Account(**values))  # type: ignore[arg-type]
    return book


def req(kind: str, amount: int, key: str = "K1", **kw: object) -> Request:
    return Request(kind, key, "6225880000000000036", amount, TODAY, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "code"), [("lost", "41"), ("stolen", "43"), ("restricted", "57"), ("expired", "54")]
)
def test_card_status_declines(status: str, code: str) -> None:
    """Lost 41, stolen 43, restricted 57, expired 54 — nothing debited."""
    book = ledger(status=status)
    assert book.authorize(req("purchase", 100)).code == code
    assert book.accounts["6225880000000000036"].balance_minor == 10_000


def test_expiry_mismatch_and_past_expiry_decline_54() -> None:
    """F14 different from the card's expiry, or a past expiry, answers 54."""
    assert ledger().authorize(req("purchase", 1, expiry="2901")).code == "54"
    assert ledger(expiry="2510").authorize(req("purchase", 1)).code == "54"


def test_unknown_card_14_insufficient_51_daily_limit_61() -> None:
    """Unknown PAN 14; over the available balance 51; over the daily limit 61."""
    book = ledger(daily_limit_minor=100_000)
    assert book.authorize(Request("purchase", "K", "6225880000000009999", 1, TODAY)).code == "14"
    assert book.authorize(req("purchase", 10_001)).code == "51"
    limited = ledger()
    assert limited.authorize(req("purchase", 5_000, "A")).code == "00"
    assert limited.authorize(req("purchase", 3_001, "B")).code == "61"


def test_forced_code_declines_after_card_checks() -> None:
    """A forced rule code applies to a good card; a lost card still answers 41."""
    assert ledger().authorize(req("purchase", 1), "51").code == "51"
    assert ledger(status="lost").authorize(req("purchase", 1), "51").code == "41"


def test_refund_void_and_reversal_of_void() -> None:
    """Void restores once (repeat 12); reversing the void re-debits."""
    book = ledger()
    acct = book.accounts["6225880000000000036"]
    book.authorize(req("purchase", 1_000, "P"))
    assert book.authorize(req("purchase_void", 1_000, "V", original_key="P")).code == "00"
    assert acct.balance_minor == 10_000
    assert book.authorize(req("purchase_void", 1_000, "V2", original_key="P")).code == "12"
    book.reverse("V")
    assert acct.balance_minor == 9_000
    book.reverse("V")
    assert acct.balance_minor == 9_000


def test_void_amount_mismatch_64_and_missing_original_25() -> None:
    book = ledger()
    book.authorize(req("purchase", 1_000, "P"))
    assert book.authorize(req("purchase_void", 999, "V", original_key="P")).code == "64"
    assert book.authorize(req("purchase_void", 1_000, "V", original_key="NOPE")).code == "25"


def test_completion_reversal_restores_the_hold() -> None:
    """Reversing a completion credits it back and re-holds the pre-auth."""
    book = ledger()
    acct = book.accounts["6225880000000000036"]
    book.authorize(req("preauth", 2_000, "PA"))
    assert book.authorize(req("completion", 2_300, "C", original_key="PA")).code == "00"
    assert (acct.balance_minor, acct.held_minor) == (7_700, 0)
    assert book.authorize(req("completion", 100, "C2", original_key="PA")).code == "12"
    book.reverse("C")
    assert (acct.balance_minor, acct.held_minor) == (10_000, 2_000)


def test_reversal_of_preauth_and_refund_once() -> None:
    book = ledger()
    acct = book.accounts["6225880000000000036"]
    book.authorize(req("preauth", 2_000, "PA"))
    book.authorize(req("refund", 500, "R"))
    for _ in range(2):
        book.reverse("PA")
        book.reverse("R")
    assert (acct.balance_minor, acct.held_minor) == (10_000, 0)


def test_balance_reports_available_net_of_holds() -> None:
    book = ledger()
    book.authorize(req("preauth", 2_000, "PA"))
    outcome = book.authorize(req("balance", 0, "B"))
    assert (outcome.code, outcome.available_minor) == ("00", 8_000)


def test_original_arriving_after_its_reversal_is_declined_and_moves_no_money() -> None:
    """A 0420 that overtook its original: the late original answers 12, nothing debited,
    and it stays reversed (a repeat of it or a later 0420 changes nothing either)."""
    book = ledger()
    acct = book.accounts["6225880000000000036"]
    book.reverse("P")
    assert book.authorize(req("purchase", 1_000, "P")).code == "12"
    assert (acct.balance_minor, acct.spent_today_minor) == (10_000, 0)
    recorded = book.txns["P"]
    assert (recorded.state, recorded.kind, recorded.amount_minor) == ("reversed", "purchase", 1_000)
    assert book.authorize(req("purchase", 1_000, "P")).code == "12"
    book.reverse("P")
    assert book.authorize(req("purchase_void", 1_000, "V", original_key="P")).code == "12"
    assert acct.balance_minor == 10_000
    assert book.authorize(req("purchase", 1_000, "P2")).code == "00"  # other keys unaffected


def test_late_preauth_after_its_reversal_holds_nothing() -> None:
    book = ledger()
    book.reverse("PA")
    assert book.authorize(req("preauth", 2_000, "PA")).code == "12"
    assert book.accounts["6225880000000000036"].held_minor == 0


def test_reversal_placeholder_survives_a_restart(tmp_path: object) -> None:
    """The early reversal is persisted: after reloading, the late original is declined."""
    import asyncio
    from pathlib import Path

    from issuer_sim.db import CardDb

    async def scenario() -> str:
        path = str(Path(str(tmp_path)) / "issuer.db")
        book = ledger()
        book.reverse("P")
        db = CardDb(path)
        await db.flush(book)
        await db.close()
        reloaded = Ledger()
        db = CardDb(path)
        await db.load(reloaded)
        await db.close()
        return reloaded.authorize(req("purchase", 1_000, "P")).code

    assert asyncio.run(scenario()) == "12"


def test_completion_void_credits_the_completion_and_leaves_the_preauth_closed() -> None:
    """Rule: the completion's debit comes back, the hold stays released (not re-held),
    the daily limit the pre-auth used is free again, and the pre-auth cannot be
    completed or voided afterwards (12)."""
    book = ledger()
    acct = book.accounts["6225880000000000036"]
    book.authorize(req("preauth", 4_000, "PA"))
    assert book.authorize(req("completion", 4_400, "C", original_key="PA")).code == "00"
    assert (acct.balance_minor, acct.held_minor, acct.spent_today_minor) == (5_600, 0, 4_000)
    assert book.authorize(req("completion_void", 4_400, "CV", original_key="C")).code == "00"
    assert (acct.balance_minor, acct.held_minor, acct.spent_today_minor) == (10_000, 0, 0)
    assert book.txns["PA"].state == "completed" and book.txns["C"].state == "voided"
    assert book.authorize(req("completion", 100, "C2", original_key="PA")).code == "12"
    assert book.authorize(req("preauth_void", 4_000, "PV", original_key="PA")).code == "12"
    assert book.authorize(req("purchase", 8_000, "P")).code == "00"  # limit freed
    assert acct.held_minor == 0


def test_reversing_a_completion_void_debits_and_counts_the_completion_again() -> None:
    book = ledger()
    acct = book.accounts["6225880000000000036"]
    book.authorize(req("preauth", 4_000, "PA"))
    book.authorize(req("completion", 4_400, "C", original_key="PA"))
    book.authorize(req("completion_void", 4_400, "CV", original_key="C"))
    for _ in range(2):
        book.reverse("CV")
    assert (acct.balance_minor, acct.held_minor, acct.spent_today_minor) == (5_600, 0, 4_000)
    assert book.txns["C"].state == "approved"


def test_an_approved_request_sent_again_is_a_duplicate_and_moves_no_money() -> None:
    """Same network keys twice (a resent 0200): 94 the second time, one debit."""
    book = ledger()
    assert book.authorize(req("purchase", 700, "K7")).code == "00"
    assert book.authorize(req("purchase", 700, "K7")).code == "94"
    assert book.accounts["6225880000000000036"].balance_minor == 10_000 - 700
    assert book.authorize(req("purchase", 700, "K8")).code == "00"  # another request
    assert book.authorize(req("refund", 300, "R1", original_key="K8")).code == "00"
    assert book.authorize(req("refund", 300, "R1", original_key="K8")).code == "94"
    assert book.accounts["6225880000000000036"].balance_minor == 10_000 - 1400 + 300


def test_a_declined_request_sent_again_is_decided_again() -> None:
    book = ledger()
    first = book.authorize(req("purchase", 20_000, "K9")).code
    assert first in ("51", "61") and "K9" not in book.txns  # nothing recorded
    assert book.authorize(req("purchase", 20_000, "K9")).code == first


def test_auth_codes_are_six_digits_never_repeated_and_in_no_order() -> None:
    """As an issuer's reach an acquirer: a store indexing them sees scattered keys
    (the journal's pre-auth index, migration 0035), never the same code twice
    among the approvals of one cycle (999,999 of them)."""
    book = ledger(balance_minor=10**9, daily_limit_minor=10**9)
    codes = []
    for n in range(200):
        outcome = book.authorize(req("purchase", 1, f"K{n}"))
        assert outcome.code == "00"
        codes.append(outcome.auth_code)
    assert all(c is not None and len(c) == 6 and c.isdigit() for c in codes)
    assert len(set(codes)) == len(codes)
    following = [book._next_auth_code() for _ in range(999_999 - 200)]
    # Spread over the whole range: 10,000 in a row fall in (nearly) every block of
    # a thousand codes, as random ones would; a counter would fill 10 blocks.
    assert len({code[:3] for code in following[:10_000]}) >= 900
    cycle = set(following) | set(codes)  # type: ignore[arg-type]
    assert len(cycle) == 999_999 and "000000" not in cycle
