"""The card file's optional transfer columns: old files keep working, new ones are
validated column by column."""

from __future__ import annotations

from pathlib import Path

import pytest

from issuer_sim.cardfile import DEMO_CARDS, read_card_file

OLD = "pan,expiry,pin,status,balance_minor,daily_limit_minor,card_org\n"
ROW = "6225880000000000010,3012,123456,active,100,100,CUP"


def test_a_file_without_the_optional_columns_gets_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    path.write_text(OLD + ROW + "\n")
    [card] = read_card_file(path)
    assert (card.holder_name, card.currency, card.issuer_id) == ("", "156", "")


def test_a_prefix_of_the_optional_columns_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    path.write_text(OLD.strip() + ",holder_name\n" + ROW + ",LI SI\n")
    assert read_card_file(path)[0].holder_name == "LI SI"


@pytest.mark.parametrize(
    ("extra", "column"),
    [
        (",LI\u00e9,156,", "holder_name"),
        (",LI SI,15X,", "currency"),
        (",LI SI,156,12AB", "issuer_id"),
    ],
)
def test_bad_optional_values_name_their_column(tmp_path: Path, extra: str, column: str) -> None:
    path = tmp_path / "cards.csv"
    path.write_text(OLD.strip() + ",holder_name,currency,issuer_id\n" + ROW + extra + "\n")
    with pytest.raises(ValueError, match=f"line 2, column {column}"):
        read_card_file(path)


def test_columns_out_of_order_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    path.write_text(OLD.strip() + ",currency\n" + ROW + ",156\n")
    with pytest.raises(ValueError, match="header"):
        read_card_file(path)


def test_the_demo_file_has_a_card_at_another_issuer_and_one_in_dollars() -> None:
    cards = read_card_file(DEMO_CARDS)
    assert any(c.issuer_id and c.status == "active" for c in cards)
    assert any(c.currency != "156" and c.status == "active" for c in cards)
    assert all(c.holder_name for c in cards)
