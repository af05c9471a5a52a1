"""Store-and-forward: queued 0420s reach the network once it is back, across restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from issuer_sim.app import start_issuer
from issuer_sim.server import IssuerServer
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.network.mapping import network_reversal
from posp.network.saf import SafForwarder, backoff_s, saf_payload
from posp.store import JournalEntry, SafItem, open_store
from posp.store.api import Store
from tests.network.cards import PAN, PIN, purchase
from tests.network.conftest import Pair, issuer_settings, open_link


async def queue_reversal(store: Store, reversal_payload: bytes) -> int:
    entry = JournalEntry("10000001", "898100000000001", "000001", "000123", "purchase", "0200")
    entry_id = await store.insert_entry(entry)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    return await store.enqueue_saf(SafItem(entry_id, reversal_payload, next_attempt_at=past))


async def test_saf_delivers_queued_reversal_and_empties_queue(pair: Pair, tmp_path: Path) -> None:
    """A due 0420 is sent, the 0430 completes it, the money is back, depth gauge 0."""
    store = open_store(f"sqlite:///{tmp_path / 'saf.db'}")
    await store.open()
    before = await pair.issuer.balance(PAN)
    original = purchase(4321, pin=PIN)
    assert (await pair.link.send(original)).get(39) == "00"
    await queue_reversal(store, saf_payload(network_reversal(original)))
    forwarder = SafForwarder(store, pair.link, min_backoff_s=0.01)
    assert await forwarder.forward_due() == 1
    assert await store.saf_depth() == 0
    assert await pair.issuer.balance(PAN) == before
    assert pair.registry.get_sample_value("posp_network_saf_depth") == 0
    await store.close()


async def test_saf_survives_network_outage_and_restart(tmp_path: Path) -> None:
    """Queued while the network is down; a new forwarder on the same store file delivers
    it once the network is back, and a repeat delivery moves no money twice."""
    db_url = f"sqlite:///{tmp_path / 'saf.db'}"
    issuer: IssuerServer = await start_issuer(issuer_settings(), hsm=inprocess_hsm_client())
    port = issuer.port
    link = await open_link(port)
    original = purchase(2500, pin=PIN)
    assert (await link.send(original)).get(39) == "00"
    before_reversal = await issuer.balance(PAN)
    payload = saf_payload(network_reversal(original))
    ledger = issuer.ledger
    await issuer.close()  # network goes away (ledger kept in memory for the restart)

    store = open_store(db_url)
    await store.open()
    await queue_reversal(store, payload)
    forwarder = SafForwarder(store, link, min_backoff_s=0.01, max_backoff_s=0.02)
    assert await forwarder.forward_due() == 0  # link down: not an attempt, waits
    assert await store.saf_depth() == 1
    await store.close()
    await link.close()

    # "Restart": network back on the same port with the same books; new store handle,
    # new link, new forwarder.
    issuer = await start_issuer(issuer_settings(port=port), hsm=inprocess_hsm_client())
    issuer.ledger.accounts, issuer.ledger.txns = ledger.accounts, ledger.txns
    link = await open_link(port)
    store = open_store(db_url)
    await store.open()
    forwarder = SafForwarder(store, link, min_backoff_s=0.01, poll_interval_s=0.02)
    await forwarder.start()
    for _ in range(200):
        if forwarder.delivered:
            break
        await forwarder.kick()
        await asyncio.sleep(0.02)
    await forwarder.close()
    assert forwarder.delivered == 1
    assert await store.saf_depth() == 0
    assert await issuer.balance(PAN) == before_reversal + 2500
    # A duplicate 0420 (e.g. the 0430 was lost) is harmless.
    assert (await link.send(network_reversal(original))).get(39) == "00"
    assert await issuer.balance(PAN) == before_reversal + 2500
    await store.close()
    await link.close()
    await issuer.close()


def test_backoff_doubles_and_caps() -> None:
    """Backoff is drawn under min·2^attempts (full jitter), never above the maximum."""
    ceilings = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert all(0.0 <= backoff_s(n, 1.0, 10.0) <= c for n, c in enumerate(ceilings))
