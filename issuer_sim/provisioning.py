"""Card provisioning: a card record (with its clear test PIN) becomes an account that
keeps only the PIN's Visa PVV, computed through the HSM (BA then DG, PVKI 1).

Invariant: the clear PIN goes to the HSM and nowhere else; it is not stored.
"""

from __future__ import annotations

from typing import Final

from issuer_sim.cardfile import CardRecord
from issuer_sim.ledger import Account
from posp.crypto.pinblock import account12
from posp.hsm.api import HsmClient

PVKI: Final = "1"


async def provision(hsm: HsmClient, pvk_lmk: str, record: CardRecord) -> Account:
    """The ledger account for ``record``; HsmError when the HSM refuses."""
    acct12 = account12(record.pan)
    lmk_pin = await hsm.encrypt_pin(record.pin, acct12)
    pvv = await hsm.generate_pvv(pvk_lmk, lmk_pin, acct12, PVKI)
    return Account(
        pan=record.pan,
        expiry=record.expiry,
        status=record.status,
        pvv=pvv,
        balance_minor=record.balance_minor,
        daily_limit_minor=record.daily_limit_minor,
        card_org=record.card_org,
        holder_name=record.holder_name,
        currency=record.currency,
        issuer_id=record.issuer_id,
    )
