"""``registry_max_age_s``: how old a cached terminal or merchant row may be on a
card transaction.  A change made elsewhere (here a second store on the same
SQLite file, as the admin CLI or another instance would be) applies on the next
card transaction with 0, and not before the bound with a long one; a change made
through the switch's own store applies at once either way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from posp.errors import ConfigError
from posp.hsm.api import HsmClient
from posp.settings import load_settings
from posp.store import Store, open_store
from posp.switch import Switch
from tests.switch.conftest import MERCHANT_ID, TERMINAL_ID, provision, switch_settings
from tests.switch.termclient import SimTerminal


@asynccontextmanager
async def _terminal_of(
    tmp_path: Path, store: Store, hsm: HsmClient, max_age_s: float
) -> AsyncIterator[tuple[SimTerminal, Store]]:
    """A switch with that bound, its terminal signed in, and a second store on
    the same file (the change made elsewhere)."""
    await provision(store, hsm)
    running = Switch(switch_settings(tmp_path, registry_max_age_s=max_age_s), store=store, hsm=hsm)
    await running.start()
    client = SimTerminal(TERMINAL_ID, MERCHANT_ID)
    await client.connect(running.port)
    elsewhere = open_store(f"sqlite:///{tmp_path / 'posp.db'}", node_id="02")
    await elsewhere.open()
    try:
        frame = await client.sign_in("001")
        assert frame.message[39] == "00"
        yield client, elsewhere
    finally:
        await elsewhere.close()
        await client.close()
        await running.stop()


async def _purchase_code(client: SimTerminal) -> str:
    _body, frame = await client.exchange(client.encode(client.purchase(), mac=True))
    return frame.message.text(39)


async def test_zero_reads_the_registry_on_every_card_transaction(
    tmp_path: Path, store: Store, hsm: HsmClient
) -> None:
    async with _terminal_of(tmp_path, store, hsm, 0.0) as (client, elsewhere):
        assert await _purchase_code(client) == "91"  # every check passed, no network
        await elsewhere.set_terminal_status(TERMINAL_ID, "disabled")
        assert await _purchase_code(client) == "58"


async def test_a_long_bound_serves_the_cached_row_until_it_expires(
    tmp_path: Path, store: Store, hsm: HsmClient
) -> None:
    async with _terminal_of(tmp_path, store, hsm, 3600.0) as (client, elsewhere):
        assert await _purchase_code(client) == "91"  # the rows are cached now
        await elsewhere.set_terminal_status(TERMINAL_ID, "disabled")
        assert await _purchase_code(client) == "91"  # the disable is not seen yet
        await store.set_terminal_status(TERMINAL_ID, "disabled")  # through the switch's store
        assert await _purchase_code(client) == "58"


def test_a_negative_bound_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="registry_max_age_s"):
        load_settings(data_dir=tmp_path, registry_max_age_s=-1)


def test_the_environment_sets_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSP_REGISTRY_MAX_AGE_S", "30")
    assert load_settings(data_dir=tmp_path).registry_max_age_s == 30.0
    monkeypatch.delenv("POSP_REGISTRY_MAX_AGE_S")
    assert load_settings(data_dir=tmp_path).registry_max_age_s == 1.0
