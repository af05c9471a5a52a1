"""The simulated chip cards a terminal process holds: one :class:`ChipCard` per PAN,
shared by every terminal of the process, so a card's ATC only ever goes up (two
terminals dipping the same card in turn send ATC n and n+1, as a real card would).

Loaded on first use from the lab chip card file (default: ``DEMO_CHIP_CARDS``, the
demo CUP cards; ``use_chip_cards`` picks another).  Separate processes each hold
their own copy of a card: give them different cards or starting ATCs.
"""

from __future__ import annotations

from pathlib import Path

from terminals.chip import DEMO_CHIP_CARDS, ChipCard, load_chip_cards

_wallet: dict[str, ChipCard] | None = None
_path: Path = DEMO_CHIP_CARDS


def use_chip_cards(path: str | Path) -> None:
    """Hold the cards of ``path`` from now on (the cards held so far are dropped)."""
    global _wallet, _path
    _path, _wallet = Path(path), None


def chip_for(pan: str) -> ChipCard | None:
    """The simulated chip of the card ``pan``, None for a magstripe-only card."""
    global _wallet
    if _wallet is None:
        _wallet = {r.pan: ChipCard(r) for r in load_chip_cards(_path)}
    return _wallet.get(pan)
