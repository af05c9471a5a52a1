"""Group commit of the risk holds on PostgreSQL: many pending journal entries and
their velocity holds in ONE transaction.

A purchase with the risk rules on inserts its pending entry, checks and adds its
hold on the velocity counters and records the hold, all in one transaction
(``HoldWithEntry``).  Alone, each such transaction holds the row locks of its
counters until its commit (a WAL flush), and every purchase of a merchant
updates the merchant's day and week rows: a merchant's purchases serialized on
those locks at one commit each.  Here concurrent requests share one transaction:

1. the entries are inserted (the insert batch's statement; a duplicate is left
   out and only its caller gets ``DuplicateTransaction``) — first, as a lone
   hold does, so a duplicate in flight elsewhere is waited for before any
   counter lock is taken;
2. the counter rows of every hold in the batch are created if missing and then
   locked, all keys in one statement, in key order (two instances' batches, and
   the single-statement check-and-add of a release, lock in the same order: no
   deadlock);
3. each hold is decided in arrival order on the locked values as the holds
   before it in the batch left them (``CounterAdd.holds_on``: all or nothing per
   request, exactly as if they had run one after another);
4. the applied holds' adds go to the counters in one statement (summed per key)
   and their records in another;
5. one commit.

A caller resumes only after that commit; the batch's rows are locked for its
whole transaction, so no other writer changes a counter between the decisions
and the write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from posp.errors import DuplicateTransaction, StoreError
from posp.risk.counters import AddResult, CounterAdd
from posp.risk.inputs import ZERO, CounterValue

#: Every counter of the batch, created when missing (keys in order).
CREATE = (
    "INSERT INTO risk_counters (counter_key, expires_on)"
    " SELECT k, e FROM unnest($1::text[], $2::text[]) AS r (k, e) ORDER BY k"
    " ON CONFLICT (counter_key) DO NOTHING"
)
LOCK = (
    "SELECT counter_key, amount_minor, txn_count, refunded_minor, last_at_s"
    " FROM risk_counters WHERE counter_key = ANY($1::text[]) ORDER BY counter_key FOR UPDATE"
)
#: The applied holds' adds, one row per key (summed; the latest counted use).
APPLY = (
    "UPDATE risk_counters AS c SET amount_minor = c.amount_minor + r.a,"
    " txn_count = c.txn_count + r.n, refunded_minor = c.refunded_minor + r.f,"
    " last_at_s = GREATEST(c.last_at_s, r.t),"
    " expires_on = CASE WHEN r.e > c.expires_on THEN r.e ELSE c.expires_on END"
    " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],"
    " $6::text[]) AS r (k, a, n, f, t, e) WHERE c.counter_key = r.k"
)
RECORDS = (
    "INSERT INTO risk_records (entry_id, rrn, terminal_id, local_day, ruleset_version,"
    " outcome, flagged, decisions, hold, created_at)"
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[])"
    " ON CONFLICT (entry_id) DO NOTHING"
)


class BatchHold(Protocol):
    """A hold and its record run with a pending entry (``HoldWithEntry``); the
    batch sets ``result``: the add's result, or None for a duplicate entry and
    for every request of a batch that failed."""

    hold: tuple[CounterAdd, ...]
    result: AddResult | None

    def record_row(self, entry_id: int) -> list[Any]:
        """The record's ``risk_records`` values for ``entry_id`` (RECORDS' order)."""
        ...


def counter_rows(adds: Iterable[CounterAdd]) -> tuple[list[str], list[str]]:
    """CREATE's parameters: the keys in order, each with its latest expiry."""
    expiry: dict[str, str] = {}
    for add in adds:
        day = add.expires_on.isoformat()
        if day > expiry.get(add.key, ""):
            expiry[add.key] = day
    keys = sorted(expiry)
    return keys, [expiry[k] for k in keys]


def entry_outcomes(order: Sequence[int], found: Sequence[Any]) -> list[int | BaseException]:
    """The batch insert's rows (one per entry, in ``order``) as each request's entry
    id or its DuplicateTransaction, in request order."""
    outcomes: list[int | BaseException] = [0] * len(order)
    for index, row in zip(order, found, strict=True):
        outcomes[index] = (
            int(row["id"])
            if row["inserted"]
            else DuplicateTransaction("insert_entry: unique constraint violated")
        )
    return outcomes


async def write_batch(
    connection: Any,
    insert_entries: str,
    columns: list[list[Any]],
    order: Sequence[int],
    holds: Sequence[BatchHold],
) -> list[int | BaseException]:
    """Steps 1–4 of the module docstring on ``connection``, inside the caller's
    transaction: ``columns`` are the entries' insert arrays with the rows in
    ``order`` (indexes into ``holds``, by dedupe key); returns each request's
    entry id or its DuplicateTransaction, in ``holds``' order."""
    # The entries first, as a lone hold does (entry, then counters): a duplicate
    # entry in flight on another instance is waited for before any counter lock
    # is taken here, and the counters stay locked for less of the transaction.
    outcomes = entry_outcomes(order, await connection.fetch(insert_entries, *columns))
    keys, expiries = counter_rows(add for then in holds for add in then.hold)
    await connection.execute(CREATE, keys, expiries)
    values = {
        r["counter_key"]: CounterValue(
            int(r["amount_minor"]),
            int(r["txn_count"]),
            int(r["refunded_minor"]),
            int(r["last_at_s"]),
        )
        for r in await connection.fetch(LOCK, keys)
    }
    if len(values) != len(keys):  # a row gone between CREATE and LOCK (a purge)
        raise StoreError("risk hold batch: a counter row vanished; each request alone")
    sums: dict[str, list[int]] = {}  # key -> amount, count, refunded, latest use
    applied: list[CounterAdd] = []
    records: list[list[Any]] = []
    for then, outcome in zip(holds, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            then.result = None
            continue
        before = {add.key: values.get(add.key, ZERO) for add in then.hold}
        if not all(add.holds_on(before[add.key]) for add in then.hold):
            then.result = AddResult(False, before)
            continue
        for add in then.hold:
            values[add.key] = add.applied_to(before[add.key])
            total = sums.setdefault(add.key, [0, 0, 0, 0])
            total[0] += add.amount_minor
            total[1] += add.txn_count
            total[2] += add.refunded_minor
            if add.txn_count > 0 and add.at_s > total[3]:
                total[3] = add.at_s
        applied.extend(then.hold)
        then.result = AddResult(True, before)
        records.append(then.record_row(outcome))
    if sums:
        changed, expiries = counter_rows(applied)  # keys in order, their latest expiry
        await connection.execute(
            APPLY,
            changed,
            [sums[k][0] for k in changed],
            [sums[k][1] for k in changed],
            [sums[k][2] for k in changed],
            [sums[k][3] for k in changed],
            expiries,
        )
        await connection.execute(RECORDS, *map(list, zip(*records, strict=True)))
    return outcomes
