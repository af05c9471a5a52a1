"""Store benchmark: journal throughput and settlement query time.

Journal: ~200 coroutines each journaling transactions the way the switch does
(insert a pending entry, then record the outcome; the "with RRN" run also
draws a sequence number first).  Target: ~1,500 txn/s on 2 cores.
``POSP_BENCH_STORE_CONCURRENCY`` (e.g. ``3,6,12,24``) runs the insert+update
part again with that many coroutines each: on PostgreSQL the group commit's
batches are then about that many rows, which shows the server's cost per
commit against its cost per row.
Settlement: ``batch_totals`` and ``list_batches`` over one terminal's batch of
10,000 transactions.  Target: well under a second.

Runs SQLite (a temporary file) and, when reachable, PostgreSQL (a temporary
schema, dropped afterwards; DSN from POSP_TEST_PG_DSN).  On PostgreSQL the
journal runs also print the server's CPU per transaction: the store's
connections carry an ``application_name`` of their own and, when the server
runs on this machine, the CPU of those backends is read from /proc.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from posp.store.api import APPROVED, JournalEntry, Store
from posp.store.postgres import PostgresStore
from posp.store.sqlite import SqliteStore
from tests.bench.bench_purchase import backends_named, cpu_s

PG_DSN = os.environ.get("POSP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CONCURRENCY = 200
JOURNAL_TXNS = 12_000
BATCH_TXNS = 10_000


def _entry(terminal_id: str, trace: int, batch: str = "000001") -> JournalEntry:
    return JournalEntry(
        terminal_id=terminal_id,
        merchant_id="898100000000001",
        batch=batch,
        trace=f"{trace % 1_000_000:06d}",
        txn_type="purchase" if trace % 10 else "refund",
        mti="0200",
        processing_code="000000",
        amount_minor=100 + trace % 5000,
        pan_masked="622588******0001",
        pan_hash="0" * 32,
        card_class="01" if trace % 7 == 0 else "00",
    )


async def _journal_one(store: Store, terminal_id: str, trace: int, with_rrn: bool) -> None:
    rrn = f"{await store.next_sequence('rrn'):012d}" if with_rrn else "000000000001"
    entry_id = await store.insert_entry(_entry(terminal_id, trace))
    await store.update_entry(
        entry_id, state=APPROVED, response_code="00", rrn=rrn, auth_code="123456"
    )


async def _server_cpu_s(name: str) -> float | None:
    """CPU seconds of the local PostgreSQL backends named ``name``; None when unknown."""
    if not name:
        return None
    pids = await backends_named(PG_DSN, name)
    try:
        return sum(cpu_s(pid) for pid in pids)
    except OSError:  # the server runs elsewhere
        return None


def _concurrencies() -> list[int]:
    """The extra journal runs' numbers of coroutines (POSP_BENCH_STORE_CONCURRENCY)."""
    text = os.environ.get("POSP_BENCH_STORE_CONCURRENCY", "")
    try:
        found = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(
            f"POSP_BENCH_STORE_CONCURRENCY={text!r}: comma-separated positive integers"
        ) from None
    if any(not 1 <= number <= JOURNAL_TXNS for number in found):
        raise SystemExit(
            f"POSP_BENCH_STORE_CONCURRENCY={text!r}: each from 1 to {JOURNAL_TXNS:,}"
            " (the transactions of a run)"
        )
    return found


async def _journal_rate(
    store: Store,
    prefix: str,
    txns: int,
    with_rrn: bool,
    server: str = "",
    concurrency: int = CONCURRENCY,
) -> tuple[float, float, float | None]:
    """Transactions per second with ``concurrency`` workers (one terminal each), this
    process's CPU and the database server's (None: unknown) per transaction in µs."""
    per_worker = txns // concurrency

    async def worker(number: int) -> None:
        terminal_id = f"{prefix}{number:05d}"
        for trace in range(1, per_worker + 1):
            await _journal_one(store, terminal_id, trace, with_rrn)

    await asyncio.gather(
        *(_journal_one(store, f"W{prefix}{n:04d}", 1, with_rrn) for n in range(20))
    )
    server_before = await _server_cpu_s(server)  # the pool has grown: warm-up above
    cpu_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    done = per_worker * concurrency
    cpu_us = (time.process_time() - cpu_before) / done * 1e6
    server_after = await _server_cpu_s(server)
    server_us = None
    if server_before is not None and server_after is not None:
        server_us = (server_after - server_before) / done * 1e6
    return done / elapsed, cpu_us, server_us


def _costs(cpu_us: float, server_us: float | None) -> str:
    server = "" if server_us is None else f", server {server_us:5.0f} us"
    return f"  (CPU per txn: client {cpu_us:5.0f} us{server})"


async def _fill_batch(store: Store, terminal_id: str) -> None:
    async def worker(start: int) -> None:
        for trace in range(start, BATCH_TXNS + 1, CONCURRENCY):
            entry_id = await store.insert_entry(_entry(terminal_id, trace, batch="000007"))
            if trace % 13:
                await store.update_entry(entry_id, state=APPROVED)

    await asyncio.gather(*(worker(n) for n in range(1, CONCURRENCY + 1)))


async def _time_ms(call: Callable[[], Awaitable[object]], runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


async def _run(name: str, store: Store, server: str = "") -> None:
    await store.open()
    try:
        rate, cpu_us, server_us = await _journal_rate(store, "A", JOURNAL_TXNS, False, server)
        print(
            f"{name}: journal insert+update            {rate:8.0f} txn/s (target 1,500)"
            + _costs(cpu_us, server_us)
        )
        rate, cpu_us, server_us = await _journal_rate(store, "B", JOURNAL_TXNS, True, server)
        print(
            f"{name}: journal rrn+insert+update        {rate:8.0f} txn/s"
            + _costs(cpu_us, server_us)
        )
        for number, concurrency in enumerate(_concurrencies()):
            rate, cpu_us, server_us = await _journal_rate(
                store, f"C{number}", JOURNAL_TXNS, False, server, concurrency
            )
            print(
                f"{name}: journal insert+update, {concurrency:3d} concurrent {rate:8.0f} txn/s"
                + _costs(cpu_us, server_us)
            )
        await _fill_batch(store, "S0000001")
        totals_ms = await _time_ms(lambda: store.batch_totals("S0000001", "000007"))
        print(f"{name}: batch_totals, {BATCH_TXNS} txns        {totals_ms:8.1f} ms (target < 1000)")
        batches_ms = await _time_ms(lambda: store.list_batches("S0000001"))
        print(f"{name}: list_batches (one terminal)       {batches_ms:8.1f} ms")
    finally:
        await store.close()


async def _pg_schema(action: str, schema: str) -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(PG_DSN, timeout=3)
    except Exception:  # absent PostgreSQL only skips its half of the benchmark
        return False
    try:
        if action == "drop":
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()
    return True


async def _main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        await _run("sqlite", SqliteStore(Path(folder) / "bench.db"))
    schema = f"bench_{secrets.token_hex(4)}"
    if not await _pg_schema("probe", schema):
        print(f"postgres: not reachable at {PG_DSN}, skipped")
        return
    try:
        dsn = f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}application_name={schema}"
        await _run("postgres", PostgresStore(dsn, schema=schema, pool_size=10), server=schema)
    finally:
        await _pg_schema("drop", schema)


def main() -> None:
    try:  # the switch runs on uvloop; measure what it will see
        import uvloop
    except ImportError:
        print("(event loop: asyncio; 2 shared cores: figures are pessimistic)")
        asyncio.run(_main())
        return
    print("(event loop: uvloop; 2 shared cores: figures are pessimistic)")
    uvloop.run(_main())


if __name__ == "__main__":
    main()
