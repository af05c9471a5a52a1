"""The process's simulated chip cards: one card object per PAN, and their ATCs kept
for the next run."""

from __future__ import annotations

from pathlib import Path

from terminals.chip import DEMO_CHIP_CARDS, TerminalChipData, load_chip_cards
from terminals.chipwallet import chip_for, save_atcs, source, state_file, use_chip_cards

PAN = "6225880000000000010"


def test_every_terminal_of_a_process_holds_the_same_card_object() -> None:
    assert chip_for(PAN) is chip_for(PAN) and chip_for("6225880000000001") is None


def test_saved_atcs_are_where_the_next_run_starts(tmp_path: Path) -> None:
    use_chip_cards(DEMO_CHIP_CARDS)
    card = chip_for(PAN)
    assert card is not None
    for _ in range(3):
        card.first_generate_ac(TerminalChipData(100, "261203", bytes(4)))
    save_atcs()
    assert state_file().is_file() and str(state_file()).startswith(str(tmp_path))
    saved = {r.pan: r.atc for r in load_chip_cards(state_file())}
    assert saved[PAN] == card.atc
    use_chip_cards(state_file())
    assert source() == state_file()
    again = chip_for(PAN)
    assert again is not None and again is not card and again.atc == card.atc
