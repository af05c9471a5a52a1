"""The simulated chip cards a terminal process holds: one :class:`ChipCard` per PAN,
shared by every terminal of the process, so a card's ATC only ever goes up (two
terminals dipping the same card in turn send ATC n and n+1, as a real card would).

Loaded on first use from the lab chip card file: ``POSP_CHIP_CARDS`` when set,
else the ATC state file (:func:`state_file`, written by :func:`save_atcs`) when a
previous run left one, else ``DEMO_CHIP_CARDS``.  ``posp-fleet`` and
``posp-conformance`` save the cards' ATCs when they finish, so the next run's
ARQCs carry higher ATCs than the issuer last accepted (it declines a replayed
or lower ATC).  Processes running at the same time each hold their own copy of
a card: give them different cards.
"""

from __future__ import annotations

import os
from pathlib import Path

from terminals.chip import DEMO_CHIP_CARDS, ChipCard, ChipCardRecord, format_chip_cards
from terminals.chip import load_chip_cards as _load


def state_file() -> Path:
    """Where the cards' ATCs are kept between runs (lab state, test keys only):
    ``$XDG_STATE_HOME/posp/chip_cards.csv``, by default under ``~/.local/state``."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "posp" / "chip_cards.csv"


_wallet: dict[str, ChipCard] | None = None
_path: Path | None = None


def source() -> Path:
    """The chip card file the wallet loads (see the module docstring)."""
    if _path is not None:
        return _path
    configured = os.environ.get("POSP_CHIP_CARDS")
    if configured:
        return Path(configured)
    saved = state_file()
    return saved if saved.is_file() else DEMO_CHIP_CARDS


def use_chip_cards(path: str | Path) -> None:
    """Hold the cards of ``path`` from now on (the cards held so far are dropped)."""
    global _wallet, _path
    _path, _wallet = Path(path), None


def held() -> dict[str, ChipCard]:
    """The cards held, by PAN (loaded on first use); a new dict after use_chip_cards."""
    global _wallet
    if _wallet is None:
        _wallet = {r.pan: ChipCard(r) for r in _load(source())}
    return _wallet


def chip_for(pan: str) -> ChipCard | None:
    """The simulated chip of the card ``pan``, None for a magstripe-only card."""
    return (_wallet if _wallet is not None else held()).get(pan)


def save_atcs(path: Path | None = None) -> None:
    """Write the cards held (with their current ATCs) to ``path``; nothing when no
    card was used.  An unwritable path is skipped: the next run may then see
    declines for replayed ATCs until the issuer is restarted."""
    if _wallet is None:
        return
    path = path or state_file()
    records = [
        ChipCardRecord(c.pan, c.psn, c.imk_ac, r.imk_smi, c.atc)
        for r in _load(source())
        if (c := _wallet.get(r.pan)) is not None
    ]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# Lab chip cards with their last ATCs (posp terminals). TEST KEYS.\n"
            + format_chip_cards(records),
            encoding="utf-8",
        )
    except OSError:
        return
