"""IC parameter storage (posp.store.ic) and the one-query management view
(posp.store.tms), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib

from posp.store.ic import SqlIcStore
from posp.store.sql_store import SqlStore
from posp.store.tms import SqlTmsStore
from posp.tms.ic import AID_KIND, CAPK_KIND, Aid, Capk
from posp.tms.params import ParamValues, Scope

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
    assert await tms.management_view("T0000001") == (None, None, None)
    group = await tms.set_param_set(Scope.GROUP, "shop", ParamValues(hotline="95516"))
    await tms.set_group("T0000001", "shop")
    own = await tms.set_param_set(Scope.TERMINAL, "T0000001", ParamValues(refund_cap_minor=9))
    await tms.set_held_ic("T0000001", CAPK_KIND, 4)
    await tms.set_held_ic("T0000001", AID_KIND, 5)
    known, group_set, own_set = await tms.management_view("T0000001")
    assert known is not None and (known.held_capk_version, known.held_aid_version) == (4, 5)
    assert group_set is not None and group_set.version == group and group_set.scope_id == "shop"
    assert own_set is not None and own_set.version == own
    assert own_set.values == ParamValues(refund_cap_minor=9)
