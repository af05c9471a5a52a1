"""IC parameter storage (migration 0021): CA public keys, AID parameter sets and
one version per kind, SQL over a ``SqlStore``'s primitives (SQLite and PostgreSQL).

Invariants:
* Entries are stored as their validated model (JSON); what is read back
  validates again, so a hand-edited row cannot reach a terminal unchecked.
* Every change (add, replace, remove, import) writes the entries and then
  takes a new version from the store-wide ``next_sequence("ic_<kind>")``
  counter, so the version grows with every change and never repeats.
* An import replaces the whole set of its kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

from posp.store.rows import now_utc
from posp.store.sql_store import SqlStore
from posp.tms.ic import AID_KIND, CAPK_KIND, Aid, Capk

_TABLE: Final = {CAPK_KIND: "ic_capks", AID_KIND: "ic_aids"}


class IcStore(Protocol):
    """The storage the IC parameter dialogues and CLI need."""

    async def capks(self) -> list[Capk]: ...
    async def aids(self) -> list[Aid]: ...
    async def put_capk(self, capk: Capk) -> int: ...
    async def put_aid(self, aid: Aid) -> int: ...
    async def remove_capk(self, rid: str, index: str) -> int | None: ...
    async def remove_aid(self, aid: str) -> int | None: ...
    async def replace(self, kind: str, entries: Sequence[Capk] | Sequence[Aid]) -> int: ...
    async def versions(self) -> dict[str, int]: ...


class SqlIcStore:
    """The IC parameter tables on an open ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self._db = store

    def _now(self) -> Any:
        return self._db._time(now_utc())

    async def capks(self) -> list[Capk]:
        sql = "SELECT tlv FROM ic_capks ORDER BY rid, key_index"
        return [Capk.model_validate_json(r["tlv"]) for r in await self._db._read("ic_capks", sql)]

    async def aids(self) -> list[Aid]:
        sql = "SELECT tlv FROM ic_aids ORDER BY aid"
        return [Aid.model_validate_json(r["tlv"]) for r in await self._db._read("ic_aids", sql)]

    async def _insert_capk(self, capk: Capk) -> None:
        sql = (
            "INSERT INTO ic_capks (rid, key_index, tlv, expiry, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (rid, key_index) DO UPDATE SET tlv = excluded.tlv,"
            " expiry = excluded.expiry, updated_at = excluded.updated_at"
        )
        params = [capk.rid, capk.index, capk.model_dump_json(), capk.expiry, self._now()]
        await self._db._write("ic_put_capk", sql, params)

    async def _insert_aid(self, aid: Aid) -> None:
        sql = (
            "INSERT INTO ic_aids (aid, tlv, updated_at) VALUES (?, ?, ?) ON CONFLICT (aid)"
            " DO UPDATE SET tlv = excluded.tlv, updated_at = excluded.updated_at"
        )
        await self._db._write("ic_put_aid", sql, [aid.aid, aid.model_dump_json(), self._now()])

    async def put_capk(self, capk: Capk) -> int:
        await self._insert_capk(capk)
        return await self._bump(CAPK_KIND)

    async def put_aid(self, aid: Aid) -> int:
        await self._insert_aid(aid)
        return await self._bump(AID_KIND)

    async def remove_capk(self, rid: str, index: str) -> int | None:
        sql = "DELETE FROM ic_capks WHERE rid = ? AND key_index = ? RETURNING rid"
        gone = await self._db._write("ic_remove_capk", sql, [rid.upper(), index.upper()])
        return await self._bump(CAPK_KIND) if gone else None

    async def remove_aid(self, aid: str) -> int | None:
        sql = "DELETE FROM ic_aids WHERE aid = ? RETURNING aid"
        gone = await self._db._write("ic_remove_aid", sql, [aid.upper()])
        return await self._bump(AID_KIND) if gone else None

    async def replace(self, kind: str, entries: Sequence[Capk] | Sequence[Aid]) -> int:
        await self._db._write("ic_clear", f"DELETE FROM {_TABLE[kind]}")
        for entry in entries:
            if isinstance(entry, Capk):
                await self._insert_capk(entry)
            else:
                await self._insert_aid(entry)
        return await self._bump(kind)

    async def versions(self) -> dict[str, int]:
        """The current version of each kind (0 = never set)."""
        found = await self._db._key_rows("ic_versions", "SELECT kind, version FROM ic_versions")
        held = {r["kind"]: int(r["version"]) for r in found}
        return {CAPK_KIND: held.get(CAPK_KIND, 0), AID_KIND: held.get(AID_KIND, 0)}

    async def _bump(self, kind: str) -> int:
        version = await self._db.next_sequence(f"ic_{kind}")
        sql = (
            "INSERT INTO ic_versions (kind, version) VALUES (?, ?)"
            " ON CONFLICT (kind) DO UPDATE SET version = excluded.version"
        )
        await self._db._write("ic_version", sql, [kind, version])
        return version
