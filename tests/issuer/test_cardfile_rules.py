"""Card file format, demo cards, and the behaviour-injection rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from issuer_sim.cardfile import DEMO_CARDS, read_card_file, write_card_file
from issuer_sim.rules import DROP, DROP_AMOUNT_MINOR, FORCE_51_AMOUNT_MINOR, Rules, demo_rules


def test_demo_cards_cover_statuses_orgs_and_balances() -> None:
    """The shipped file has every status, CUP and foreign cards, rich active accounts."""
    cards = read_card_file(DEMO_CARDS)
    assert len(cards) >= 20
    assert {c.status for c in cards} == {"active", "lost", "stolen", "restricted", "expired"}
    assert {"CUP", "VIS", "MCC"} <= {c.card_org for c in cards}
    assert sum(c.status == "active" and c.balance_minor >= 100_000_000 for c in cards) >= 10


def test_card_file_round_trip(tmp_path: Path) -> None:
    cards = read_card_file(DEMO_CARDS)
    path = tmp_path / "cards.csv"
    write_card_file(path, cards)
    assert read_card_file(path) == cards


def test_bad_row_names_line_and_column_not_the_pan(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "pan,expiry,pin,status,balance_minor,daily_limit_minor,card_org\n"
        "6225880000000000036,3012,123456,missing,1,1,CUP\n"
    )
    with pytest.raises(ValueError, match="line 2, column status") as err:
        read_card_file(path)
    assert "6225880000000000036" not in str(err.value)


def test_card_repr_masks_pan_and_hides_pin() -> None:
    card = read_card_file(DEMO_CARDS)[0]
    assert card.pan not in repr(card) and card.pin not in repr(card)


def test_demo_rules_drop_and_force_51() -> None:
    rules = demo_rules()
    assert rules.verdict("6225880000000000036", DROP_AMOUNT_MINOR) == DROP
    assert rules.verdict("6225880000000000036", FORCE_51_AMOUNT_MINOR) == "51"
    assert rules.verdict("6225880000000000036", 100) == ""


def test_rules_update_validates_and_forces_by_pan() -> None:
    rules = Rules()
    rules.update({"forced_by_pan": {"6225880000000000036": "05"}, "latency_ms": 5})
    assert rules.verdict("6225880000000000036", 1) == "05"
    assert "6225880000000000036" not in str(rules.snapshot())
    with pytest.raises(ValueError):
        rules.update({"drop_rate": 2})
    with pytest.raises(ValueError):
        rules.update({"nonsense": 1})
