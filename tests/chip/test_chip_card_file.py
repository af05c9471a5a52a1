"""The lab chip card file of terminals.chip: parse, validate, write back."""

from __future__ import annotations

from pathlib import Path

import pytest

from issuer_sim.cardfile import DEMO_CARDS, read_card_file
from posp.crypto.des import has_odd_parity
from terminals.chip import (
    CHIP_FILE_HEADER,
    DEMO_CHIP_CARDS,
    ChipCardRecord,
    format_chip_cards,
    load_chip_cards,
    parse_chip_cards,
)

IMK = "0123456789ABCDEFFEDCBA9876543210"
GOOD = f"# lab cards\n{CHIP_FILE_HEADER}\n6228000100001,01,{IMK},{IMK},576\n\n"


def test_a_good_file_parses_and_round_trips(tmp_path: Path) -> None:
    """Comments and blank lines are skipped; format_chip_cards writes what parses back."""
    records = parse_chip_cards(GOOD)
    assert records == [
        ChipCardRecord("6228000100001", "01", bytes.fromhex(IMK), bytes.fromhex(IMK), 576)
    ]
    path = tmp_path / "chip.csv"
    path.write_text(format_chip_cards(records))
    assert load_chip_cards(path) == records


def test_repr_shows_neither_pan_nor_keys() -> None:
    """A record's repr has the masked PAN and the ATC only."""
    text = repr(parse_chip_cards(GOOD)[0])
    assert "6228000100001" not in text and IMK not in text and "0001" in text


@pytest.mark.parametrize(
    ("line", "column"),
    [
        (f"62280001,01,{IMK},{IMK},1", "pan"),
        (f"6228000100001,1,{IMK},{IMK},1", "psn"),
        (f"6228000100001,01,{IMK[:-1]},{IMK},1", "imk_ac"),
        (f"6228000100001,01,{IMK},{IMK[:-1]}G,1", "imk_smi"),
        (f"6228000100001,01,{IMK},{IMK},65536", "atc"),
    ],
)
def test_a_bad_cell_names_line_and_column_not_the_value(line: str, column: str) -> None:
    """ValueError says 'line 2, column X' and never echoes the cell."""
    with pytest.raises(ValueError, match=f"line 2, column {column}") as caught:
        parse_chip_cards(f"{CHIP_FILE_HEADER}\n{line}\n")
    assert IMK not in str(caught.value)


def test_a_missing_header_or_wrong_column_count_is_refused() -> None:
    """No header line, or a row with 4 columns: ValueError."""
    with pytest.raises(ValueError, match="first line"):
        parse_chip_cards(f"6228000100001,01,{IMK},{IMK},1\n")
    with pytest.raises(ValueError, match="5 columns"):
        parse_chip_cards(f"{CHIP_FILE_HEADER}\n6228000100001,01,{IMK},1\n")


def test_the_demo_chip_cards_are_the_demo_cup_cards() -> None:
    """DEMO_CHIP_CARDS parses, has odd-parity IMKs, and covers every demo CUP card."""
    chips = load_chip_cards(DEMO_CHIP_CARDS)
    cup = {r.pan for r in read_card_file(DEMO_CARDS) if r.card_org == "CUP"}
    assert {c.pan for c in chips} == cup
    assert all(has_odd_parity(c.imk_ac) and has_odd_parity(c.imk_smi) for c in chips)
