"""Issuer ledger transfers (pure): both legs in one step or neither, void and
reversal restore both legs exactly once, beneficiary checks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from issuer_sim.ledger import Account, Ledger, Request, mask_holder_name

TODAY = "20261121"
PAYER, PAYEE, USD, OTHER = (
    "6225880000000000036",
    "6225880000000000044",
    "6225880000000000192",
    "6225880000000000184",
)


def book(payer_balance: int = 10_000, daily_limit: int = 8_000) -> Ledger:
    ledger = Ledger()
    for pan, balance, currency, issuer in (
        (PAYER, payer_balance, "156", ""),
        (PAYEE, 1_000, "156", ""),
        (USD, 1_000, "840", ""),
        (OTHER, 1_000, "156", "00020344"),
    ):
        ledger.put_account(
            Account(pan, "3012", "active", "1234", balance, daily_limit, "CUP",
                    holder_name="ZHANG SAN", currency=currency, issuer_id=issuer)
        )  # fmt: skip
    return ledger


def transfer(amount: int, key: str = "T1", to: str = PAYEE) -> Request:
    return Request("transfer", key, PAYER, amount, TODAY, receiving_pan=to)


def void(amount: int, original: str = "T1", key: str = "V1") -> Request:
    return Request("transfer_void", key, PAYER, amount, TODAY, original_key=original)


def balances(ledger: Ledger, *pans: str) -> tuple[int, ...]:
    return tuple(ledger.accounts[p].balance_minor for p in pans)


def test_transfer_moves_both_legs_and_a_duplicate_is_94() -> None:
    ledger = book()
    assert ledger.authorize(transfer(2_500)).code == "00"
    assert balances(ledger, PAYER, PAYEE) == (7_500, 3_500)
    assert ledger.authorize(transfer(2_500)).code == "94"
    assert balances(ledger, PAYER, PAYEE) == (7_500, 3_500)


def test_transfer_to_another_issuers_card_credits_it() -> None:
    ledger = book()
    assert ledger.authorize(transfer(100, to=OTHER)).code == "00"
    assert balances(ledger, PAYER, OTHER) == (9_900, 1_100)


def test_declines_move_neither_leg() -> None:
    """A3 unknown payee, A1 payee in another currency, 51 funds, 61 daily limit."""
    ledger = book(payer_balance=5_000, daily_limit=4_000)
    assert ledger.authorize(transfer(1, "A", to="6225880000000009999")).code == "A3"
    assert ledger.authorize(transfer(1, "B", to=USD)).code == "A1"
    assert ledger.authorize(transfer(4_001, "C")).code == "61"
    assert book(payer_balance=500).authorize(transfer(501)).code == "51"
    assert balances(ledger, PAYER, PAYEE, USD) == (5_000, 1_000, 1_000)


def test_void_restores_both_legs_once_and_its_reversal_moves_them_again() -> None:
    ledger = book()
    ledger.authorize(transfer(2_000))
    assert ledger.authorize(void(2_000)).code == "00"
    assert balances(ledger, PAYER, PAYEE) == (10_000, 1_000)
    assert ledger.authorize(void(2_000, key="V2")).code == "12"
    ledger.reverse("V1")
    ledger.reverse("V1")
    assert balances(ledger, PAYER, PAYEE) == (8_000, 3_000)


def test_reversal_restores_both_legs_once_and_a_late_original_is_12() -> None:
    ledger = book()
    ledger.authorize(transfer(2_000))
    ledger.reverse("T1")
    ledger.reverse("T1")
    assert balances(ledger, PAYER, PAYEE) == (10_000, 1_000)
    ledger.reverse("T2")  # the 0420 overtook its transfer
    assert ledger.authorize(transfer(2_000, "T2")).code == "12"
    assert balances(ledger, PAYER, PAYEE) == (10_000, 1_000)


def test_beneficiary_check_names_the_holder_masked() -> None:
    ledger = book()
    outcome = ledger.authorize(Request("beneficiary_check", "B", PAYEE, 0, TODAY))
    assert (outcome.code, outcome.holder_name) == ("00", "***** SAN")
    assert ledger.authorize(Request("beneficiary_check", "B", USD, 0, TODAY)).code == "A1"
    unknown = Request("beneficiary_check", "B", "6225880000000009999", 0, TODAY)
    assert ledger.authorize(unknown).code == "A3"


@given(
    st.lists(st.tuples(st.sampled_from(["t", "v", "r", "rv"]), st.integers(1, 3_000)), max_size=30)
)
def test_any_sequence_of_transfers_voids_and_reversals_conserves_money(
    steps: list[tuple[str, int]],
) -> None:
    """Whatever is approved, voided or reversed (repeated or not), the sum of all
    balances never changes."""
    ledger = book(payer_balance=50_000, daily_limit=10**9)
    total = sum(balances(ledger, PAYER, PAYEE, USD, OTHER))
    for i, (op, amount) in enumerate(steps):
        if op == "t":
            ledger.authorize(transfer(amount, f"T{i}"))
        elif op == "v" and (keys := [k for k, t in ledger.txns.items() if t.kind == "transfer"]):
            original = ledger.txns[keys[amount % len(keys)]]
            ledger.authorize(void(original.amount_minor, original.key, f"V{i}"))
        elif op in ("r", "rv") and ledger.txns:
            keys = sorted(k for k, t in ledger.txns.items() if "/" not in k)
            if keys:
                ledger.reverse(keys[amount % len(keys)])
    assert sum(balances(ledger, PAYER, PAYEE, USD, OTHER)) == total


@given(st.text(st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=12))
def test_masking_keeps_the_length_and_at_most_the_last_word(name: str) -> None:
    masked = mask_holder_name(name)
    assert len(masked) == len(name) and masked[-1] == name[-1]
