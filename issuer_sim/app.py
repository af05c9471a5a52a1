"""Build and start the network simulator in-process (``posp up``, tests) or for the CLI.

``start_issuer`` opens the ledger store, provisions the card file when the store has
no accounts yet (PVVs through the HSM), and starts listening.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from issuer_sim.cardfile import apply_card_details, read_card_file
from issuer_sim.chipissuer import ChipIssuer, open_chip_book
from issuer_sim.db import CardDb
from issuer_sim.ledger import Ledger
from issuer_sim.provisioning import provision
from issuer_sim.rules import Rules, demo_rules
from issuer_sim.server import IssuerServer
from issuer_sim.settings import IssuerSettings
from posp.hsm import open_hsm_client
from posp.hsm.api import HsmClient


def rules_from(settings: IssuerSettings) -> Rules:
    rules = demo_rules()
    rules.latency_ms = settings.latency_ms
    rules.drop_rate = settings.drop_rate
    rules.key_exchange_interval_s = settings.key_exchange_interval_s
    return rules


async def load_ledger(settings: IssuerSettings, hsm: HsmClient, db: CardDb) -> Ledger:
    """The ledger from the store, seeded from the card file when the store is empty."""
    ledger = Ledger()
    await db.load(ledger)
    if not ledger.accounts and settings.cards is not None:
        for record in read_card_file(settings.cards):
            ledger.put_account(await provision(hsm, settings.pvk_lmk, record))
        await db.flush(ledger)
    elif settings.cards is not None:  # holder names, currencies, issuers: card file only
        apply_card_details(ledger.accounts, read_card_file(settings.cards))
    return ledger


async def start_issuer(
    settings: IssuerSettings,
    *,
    hsm: HsmClient | None = None,
    registry: CollectorRegistry | None = None,
) -> IssuerServer:
    """Start the simulator; the caller owns it and must ``await server.close()``
    (which also closes ``hsm``)."""
    if hsm is None:
        hsm = open_hsm_client(settings.hsm)
    db = CardDb(settings.db)
    ledger = await load_ledger(settings, hsm, db)
    server = IssuerServer(
        settings,
        hsm,
        ledger,
        db,
        rules_from(settings),
        registry if registry is not None else CollectorRegistry(),
    )
    chip_store, chip_cards = await open_chip_book(
        hsm, settings.db, settings.chip_cards, settings.chip_script_pans
    )
    server.authorizer.chip = ChipIssuer(hsm, chip_cards, chip_store)
    await server.listen()
    return server
