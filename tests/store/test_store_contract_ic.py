"""IC parameter storage (posp.store.ic) and the one-query management view
(posp.store.tms), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib

from posp.store.ic import SqlIcStore
from posp.store.sql_store import SqlStore
from posp.store.tms import ManagementRow, SqlTmsStore
from posp.tms.ic import AID_KIND, CAPK_KIND, Aid, Capk
from posp.tms.params import ParamValues, Scope
from posp.tms.rollout import RolloutService

RID, MODULUS = "A000000333", "C3" * 64


def _capk(index: str) -> Capk:
    digest = hashlib.sha1(bytes.fromhex(RID + index + MODULUS + "03")).hexdigest()
    return Capk(rid=RID, index=index, modulus=MODULUS, exponent="03", expiry="301231", hash=digest)


async def test_every_ic_change_takes_a_new_version_and_entries_round_trip(store: SqlStore) -> None:
    ic = SqlIcStore(store)
    assert await ic.versions() == {CAPK_KIND: 0, AID_KIND: 0}
    first = await ic.put_capk(_capk("08"))
    second = await ic.put_capk(_capk("09"))
    assert second > first and await ic.capks() == [_capk("08"), _capk("09")]
    removed = await ic.remove_capk(RID.lower(), "08")
    assert removed is not None and removed > second
    assert await ic.remove_capk(RID, "08") is None  # nothing removed, no new version
    aid = Aid(aid="A000000333010101", ec_limit_minor=100000)
    await ic.put_aid(aid)
    replaced = await ic.replace(CAPK_KIND, [_capk("0A")])
    assert await ic.capks() == [_capk("0A")] and await ic.aids() == [aid]
    assert (await ic.versions())[CAPK_KIND] == replaced


async def test_the_management_view_reads_row_and_both_parameter_sets_at_once(
    store: SqlStore,
) -> None:
    tms = SqlTmsStore(store)
    assert await tms.management_view("T0000001") == ManagementRow(None, None, None, None)
    group = await tms.set_param_set(Scope.GROUP, "shop", ParamValues(hotline="95516"))
    await tms.set_group("T0000001", "shop")
    own = await tms.set_param_set(Scope.TERMINAL, "T0000001", ParamValues(refund_cap_minor=9))
    await tms.set_held_ic("T0000001", CAPK_KIND, 4)
    await tms.set_held_ic("T0000001", AID_KIND, 5)
    row = await tms.management_view("T0000001")
    known, group_set, own_set = row.known, row.group_set, row.own_set
    assert known is not None and (known.held_capk_version, known.held_aid_version) == (4, 5)
    assert group_set is not None and group_set.version == group and group_set.scope_id == "shop"
    assert own_set is not None and own_set.version == own
    assert own_set.values == ParamValues(refund_cap_minor=9)


async def test_the_views_offer_follows_the_rollout_services_rule(store: SqlStore) -> None:
    """The offer read with the view agrees with ``RolloutService.offer`` through a
    rollout's life: offered while running and reached, not once reported or paused."""
    tms = SqlTmsStore(store)
    service = RolloutService(tms)
    for tid in ("T1", "T2", "T3"):
        await tms.set_group(tid, "g")
    rollout = await service.start("g", "P8/V2.0.pkg", "V2.0", (50.0, 100.0), 100.0)

    async def agree() -> list[str | None]:
        offers = []
        for tid in ("T1", "T2", "T3"):
            by_service = await service.offer(tid)
            by_view = (await tms.management_view(tid)).offer
            assert by_view == (by_service.target if by_service else None), tid
            offers.append(by_view)
        return offers

    assert (await agree()).count("P8/V2.0.pkg") == 2  # wave 1: ceil(50 % of 3)
    await service.pause(rollout.id)
    assert await agree() == [None, None, None]
    await service.resume(rollout.id)
    offered = [tid for tid, o in zip(("T1", "T2", "T3"), await agree(), strict=True) if o]
    await service.status_upload(offered[0], "V2.0")
    assert (await tms.management_view(offered[0])).offer is None
    await agree()
