"""The switch's terminal-management view: cached per terminal (a purchase costs no
store round trip once the view is read), forgotten by the switch's own writes,
caps and header digit 6 read from it."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from posp.iso8583.tms_identity import TerminalIdentity
from posp.store.ic import IcStore
from posp.store.tms import ManagementRow, TerminalTms, TmsStore
from posp.tms.params import ParamSet, ParamValues, Scope
from posp.tms.service import TerminalCaps, TerminalManagement


class CountingStores:
    """Just enough of TmsStore and IcStore, counting every call."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.group = ParamSet(Scope.GROUP, "default", 7, ParamValues(purchase_cap_minor=500))
        self.known = TerminalTms("T1", held_param_version=6, held_capk_version=3)
        self.ic_versions = {"capk": 3, "aid": 0}

    async def management_view(self, terminal_id: str) -> ManagementRow:
        self.calls["view"] += 1
        return ManagementRow(self.known, self.group, None, None)

    async def rollouts_of(self, terminal_id: str) -> list[Any]:
        return []

    async def versions(self) -> dict[str, int]:
        self.calls["ic"] += 1
        return self.ic_versions

    async def record_status(self, terminal_id: str, **fields: Any) -> None:
        self.calls["status"] += 1
        self.known = TerminalTms("T1", held_param_version=7, identity=fields["identity"])

    async def set_held_params(self, terminal_id: str, version: int) -> None:
        self.calls["held"] += 1
        self.known = TerminalTms("T1", held_param_version=version, held_capk_version=3)


def _management(stores: CountingStores, max_age_s: float = 60.0) -> TerminalManagement:
    return TerminalManagement(cast(TmsStore, stores), cast(IcStore, stores), max_age_s=max_age_s)


async def test_a_second_view_within_the_age_reads_nothing() -> None:
    stores = CountingStores()
    tms = _management(stores)
    first = await tms.view("T1")
    assert first.digit == "1" and first.caps == TerminalCaps(purchase_minor=500)
    await tms.view("T1")
    await tms.terminal_caps("T1")
    assert stores.calls == Counter(view=1, ic=1)


async def test_the_switchs_own_write_is_seen_at_once() -> None:
    stores = CountingStores()
    tms = _management(stores)
    assert (await tms.view("T1")).digit == "1"
    await tms.held_params("T1", 7)
    assert (await tms.view("T1")).digit == "0"
    stores.ic_versions = {"capk": 3, "aid": 2}
    tms.forget()  # an IC change: every terminal and the set versions
    assert (await tms.view("T1")).digit == "5"


async def test_an_identity_is_stored_only_when_it_changed() -> None:
    stores = CountingStores()
    tms = _management(stores)
    identity = TerminalIdentity(device_type="02", hardware_serial="S1")
    f59 = identity.render()
    assert await tms.identity_seen("T1", f59, identity)
    assert not await tms.identity_seen("T1", f59, identity)
    assert stores.calls["status"] == 1


def test_the_no_pin_limit_counts_only_when_key_40_enables_it() -> None:
    off = ParamValues(small_amount_enabled=False, small_amount_limit_minor=30000)
    on = ParamValues(small_amount_enabled=True, small_amount_limit_minor=30000)
    assert TerminalCaps.of(off).no_pin_limit_minor is None
    assert TerminalCaps.of(on).no_pin_limit_minor == 30000


async def test_ic_versions_read_across_an_ic_change_are_not_kept() -> None:
    stores = CountingStores()
    tms = _management(stores)
    plain = stores.versions

    async def changing() -> dict[str, int]:
        tms.forget()  # the IC sets change through this object while the read is in flight
        return await plain()

    stores.versions = changing  # type: ignore[method-assign]
    await tms.view("T1")
    stores.versions = plain  # type: ignore[method-assign]
    await tms.view("T1")
    assert stores.calls["ic"] == 2  # read again: the first answer may predate the change
