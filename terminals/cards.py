"""Cards as a simulated terminal sees them: PAN, expiry, the PIN the
cardholder types, and the track 2 the magstripe reader would return.

Invariant: ``repr`` never shows the full PAN or the PIN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posp.iso8583.message import mask_pan

SERVICE_CODE = "101"
# Track 2 is padded with zero discretionary data to this many characters, the
# length UnionPay magstripe cards usually carry (capped by F35's 37).
TRACK2_CHARS = 36
ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class TerminalCard:
    """A test card.  ``expiry`` is YYMM; ``card_org`` is CUP/VIS/MCC/JCB/AEX."""

    pan: str
    expiry: str
    pin: str
    status: str = ACTIVE
    card_org: str = "CUP"
    currency: str = "156"  # the account's currency (a transfer to another one gets A1)

    @property
    def track2(self) -> str:
        """Track 2 equivalent data, ``=`` as the separator."""
        prefix = f"{self.pan}={self.expiry}{SERVICE_CODE}"
        return prefix + "0" * max(0, TRACK2_CHARS - len(prefix))

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def __repr__(self) -> str:
        return f"TerminalCard({mask_pan(self.pan)}, status={self.status!r}, org={self.card_org!r})"


def load_cards(path: str | Path | None = None) -> list[TerminalCard]:
    """Cards from a demo card file (default: issuer_sim's shipped DEMO_CARDS)."""
    from issuer_sim.cardfile import DEMO_CARDS, read_card_file

    records = read_card_file(Path(path) if path is not None else DEMO_CARDS)
    return [
        TerminalCard(
            pan=r.pan,
            expiry=str(r.expiry),
            pin=str(r.pin),
            status=str(r.status),
            card_org=str(r.card_org),
            currency=r.currency,
        )
        for r in records
    ]
