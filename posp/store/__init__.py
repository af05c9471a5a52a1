"""The switch's store: registry, journal, store-and-forward queue, settlement
and batch upload.  ``open_store(url)`` picks the implementation from the URL:

* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
  ``sqlite:///:memory:`` -> ``SqliteStore`` (the embedded default);
* ``postgresql://...`` / ``postgres://...`` -> ``PostgresStore`` (asyncpg pool;
  ``?pool_size=N`` and ``?schema=NAME`` are taken from the query string).

The returned store is not open yet: ``await store.open()`` applies migrations.
"""

from __future__ import annotations

from posp.errors import ConfigError
from posp.store.api import (
    APPROVED,
    COMPLETED,
    DECLINED,
    PENDING,
    REVERSED,
    TIMED_OUT,
    VOIDED,
    BatchTotals,
    DeferredReversal,
    JournalEntry,
    Merchant,
    SafItem,
    Settlement,
    Store,
    Terminal,
    UploadedRecord,
)

__all__ = [
    "APPROVED",
    "COMPLETED",
    "DECLINED",
    "PENDING",
    "REVERSED",
    "TIMED_OUT",
    "VOIDED",
    "BatchTotals",
    "DeferredReversal",
    "JournalEntry",
    "Merchant",
    "SafItem",
    "Settlement",
    "Store",
    "Terminal",
    "UploadedRecord",
    "open_store",
]

_SQLITE_PREFIX = "sqlite:///"


def open_store(url: str, *, node_id: str = "", pan_hash_key: bytes | None = None) -> Store:
    """The store for ``url`` (not yet opened).  ``pan_hash_key`` is accepted for the
    switch's convenience and unused: the switch computes ``pan_hash`` itself."""
    del pan_hash_key
    if url.startswith(_SQLITE_PREFIX):
        from posp.store.sqlite import SqliteStore

        path = url[len(_SQLITE_PREFIX) :]
        if not path:
            raise ConfigError("store url sqlite:/// needs a file path (or :memory:)")
        return SqliteStore(path, node_id=node_id)
    if url.startswith(("postgresql://", "postgres://")):
        from posp.store.postgres import PostgresStore

        return PostgresStore.from_url(url, node_id=node_id)
    raise ConfigError("store url must start with sqlite:/// or postgresql:// (or postgres://)")
