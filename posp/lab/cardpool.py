"""A pool of lab cards large enough for load runs with the risk rules on.

The demo card file has ~20 cards; a fleet or benchmark at 1,500 purchases/s
would put each past the 100,000.00 card-day cap of the default ruleset within a
minute.  A pool spreads the load: with ``count`` cards and purchases of at
most 50.00 (``terminals.mix``), a card reaches the day cap only after 2,000
purchases, i.e. ``count`` × 2,000 purchases a business day.

Invariants: deterministic (the same ``count`` writes the same cards), PANs in
the demo BIN 622588 with a range (``62258890…``) the demo file does not use,
each card active with a balance and daily limit of 1,000,000.00 CNY and the
demo PIN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from issuer_sim.cardfile import CardRecord, write_card_file

POOL_PREFIX: Final = "62258890"
POOL_PIN: Final = "123456"
POOL_MINOR: Final = 100_000_000  # balance and daily limit: 1,000,000.00 CNY


def pool_records(count: int) -> list[CardRecord]:
    if not 1 <= count <= 10_000_000:
        raise ValueError(f"card pool size {count}: between 1 and 10,000,000")
    return [
        CardRecord(
            pan=f"{POOL_PREFIX}{index:011d}",
            expiry="3012",
            pin=POOL_PIN,
            status="active",
            balance_minor=POOL_MINOR,
            daily_limit_minor=POOL_MINOR,
            card_org="CUP",
            holder_name=f"POOL {index}",
        )
        for index in range(count)
    ]


def write_card_pool(path: Path, count: int) -> Path:
    """Write ``count`` pool cards as an issuer-sim card file (also read by
    ``terminals.cards.load_cards``)."""
    write_card_file(path, pool_records(count))
    return path
