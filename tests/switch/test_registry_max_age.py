"""``registry_max_age_s``: how old a cached terminal or merchant row may be on a
card transaction.  A change made elsewhere (here a second store on the same
SQLite file, as the admin CLI or another instance would be) applies on the next
card transaction with 0 and once the bound has passed with a longer one; a
change made through the switch's own store applies at once either way.  The
cache's clock is moved forward by the test (no waiting)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from posp.errors import ConfigError
from posp.hsm.api import HsmClient
from posp.settings import load_settings
from posp.store import Store, open_store
from posp.store.sql_store import SqlStore
from posp.store.tms import SqlTmsStore
from posp.switch import Switch
from posp.tms.params import ParamValues, Scope
from tests.registry_clock import MovedClock, moved_registry_clock
from tests.switch.conftest import MERCHANT_ID, TERMINAL_ID, provision, switch_settings
from tests.switch.termclient import SimTerminal


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> MovedClock:
    return moved_registry_clock(monkeypatch)


@asynccontextmanager
async def _terminal_of(
    tmp_path: Path, store: Store, hsm: HsmClient, **settings: Any
) -> AsyncIterator[tuple[SimTerminal, Store]]:
    """A switch with those settings, its terminal signed in, and a second store on
    the same file (the change made elsewhere)."""
    await provision(store, hsm)
    running = Switch(switch_settings(tmp_path, **settings), store=store, hsm=hsm)
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


async def _purchase(client: SimTerminal) -> tuple[str, str]:
    """The answer's F39 and header digit 6."""
    _body, frame = await client.exchange(client.encode(client.purchase(), mac=True))
    return frame.message.text(39), frame.header[5]


async def test_zero_reads_the_registry_on_every_card_transaction(
    tmp_path: Path, store: Store, hsm: HsmClient
) -> None:
    async with _terminal_of(tmp_path, store, hsm, registry_max_age_s=0.0) as (client, elsewhere):
        assert (await _purchase(client))[0] == "91"  # every check passed, no network
        await elsewhere.set_terminal_status(TERMINAL_ID, "disabled")
        assert (await _purchase(client))[0] == "58"


async def test_a_change_made_elsewhere_applies_once_the_bound_has_passed(
    tmp_path: Path, store: Store, hsm: HsmClient, clock: MovedClock
) -> None:
    async with _terminal_of(tmp_path, store, hsm, registry_max_age_s=5.0) as (client, elsewhere):
        assert (await _purchase(client))[0] == "91"  # the rows are cached now
        await elsewhere.set_terminal_status(TERMINAL_ID, "disabled")
        clock.ahead_s = 2.0  # past the former fixed 1 s, within the bound
        assert (await _purchase(client))[0] == "91"
        clock.ahead_s = 6.0
        assert (await _purchase(client))[0] == "58"


async def test_a_disabled_merchant_elsewhere_applies_once_the_bound_has_passed(
    tmp_path: Path, store: Store, hsm: HsmClient, clock: MovedClock
) -> None:
    async with _terminal_of(tmp_path, store, hsm, registry_max_age_s=5.0) as (client, elsewhere):
        assert (await _purchase(client))[0] == "91"
        await elsewhere.set_merchant_status(MERCHANT_ID, "disabled")
        clock.ahead_s = 2.0
        assert (await _purchase(client))[0] == "91"
        clock.ahead_s = 6.0
        assert (await _purchase(client))[0] == "58"


async def test_a_change_through_the_switchs_own_store_applies_at_once(
    tmp_path: Path, store: Store, hsm: HsmClient
) -> None:
    async with _terminal_of(tmp_path, store, hsm, registry_max_age_s=3600.0) as (client, _):
        assert (await _purchase(client))[0] == "91"
        await store.set_terminal_status(TERMINAL_ID, "disabled")
        assert (await _purchase(client))[0] == "58"


async def test_a_batch_closed_elsewhere_is_read_again_before_77(
    tmp_path: Path, store: Store, hsm: HsmClient
) -> None:
    async with _terminal_of(tmp_path, store, hsm, registry_max_age_s=3600.0) as (client, elsewhere):
        assert (await _purchase(client))[0] == "91"  # batch 000001 cached
        assert await elsewhere.close_batch(TERMINAL_ID, "000001", "000002")
        client.batch = "000002"  # the terminal settled on another instance
        assert (await _purchase(client))[0] == "91"  # not 77 for the stale copy


async def test_the_management_view_keeps_its_own_bound_when_the_registry_has_none(
    tmp_path: Path, store: Store, hsm: HsmClient
) -> None:
    async with _terminal_of(
        tmp_path, store, hsm, registry_max_age_s=0.0, tms={"view_max_age_s": 3600.0}
    ) as (client, elsewhere):
        code, digit = await _purchase(client)  # the view is cached now
        assert code == "91" and digit == "0"
        assert isinstance(elsewhere, SqlStore)
        await SqlTmsStore(elsewhere).set_param_set(
            Scope.GROUP, "default", ParamValues(purchase_cap_minor=500_000)
        )
        assert await _purchase(client) == ("91", "0")  # a new set not announced yet


def test_a_negative_bound_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="registry_max_age_s"):
        load_settings(data_dir=tmp_path, registry_max_age_s=-1)


def test_the_environment_sets_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSP_REGISTRY_MAX_AGE_S", "30")
    assert load_settings(data_dir=tmp_path).registry_max_age_s == 30.0
    monkeypatch.delenv("POSP_REGISTRY_MAX_AGE_S")
    assert load_settings(data_dir=tmp_path).registry_max_age_s == 1.0
