"""issuer_sim persistence under failure: the durable ledger mode survives its own
``kill -9``, and shutdown is safe when a save was cancelled mid-write."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from issuer_sim.db import CardDb
from issuer_sim.ledger import Account, Ledger, Txn
from tests.network.cards import PAN, PIN, purchase
from tests.network.conftest import open_link
from tests.terminals.processes import free_port, wait_for_port

BIN = Path(sys.executable).parent


async def _balance_in_file(db: str, pan: str) -> int:
    ledger = Ledger()
    store = CardDb(db)
    await store.load(ledger)
    await store.close()
    return ledger.accounts[pan].balance_minor


def _serve(db: Path, port: int, *flags: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "POSP_ISSUER_FLUSH_INTERVAL_S": "3600"}  # no write-behind help
    argv = [str(BIN / "issuer-sim"), "serve", "--port", str(port), "--db", str(db), *flags]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_port(port, process)
    return process


async def test_durable_issuer_keeps_every_approval_it_sent_after_kill_9(tmp_path: Path) -> None:
    """--durable: an approval answered just before SIGKILL is in the file after restart."""
    db = tmp_path / "issuer.db"
    port = free_port()
    process = _serve(db, port, "--durable")
    try:
        before = await _balance_in_file(str(db), PAN)
        link = await open_link(port)
        try:
            assert (await link.send(purchase(4321, pin=PIN))).get(39) == "00"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
            await link.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert await _balance_in_file(str(db), PAN) == before - 4321
    restarted = _serve(db, port)
    try:
        assert restarted.poll() is None
    finally:
        restarted.terminate()
        restarted.wait()


def test_durable_without_a_db_file_is_refused() -> None:
    """--durable needs --db: exit 2 and a message naming both, not a silent no-op."""
    done = subprocess.run(
        [str(BIN / "issuer-sim"), "serve", "--durable", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--durable" in done.stderr and "--db" in done.stderr


def _rows(count: int, seed: int) -> tuple[list[Account], list[Txn]]:
    accounts = [
        Account(f"62258800{seed:05d}{i:06d}", "3012", "active", "1234", i, 10**9, "CUP")
        for i in range(count)
    ]
    txns = [Txn(f"K{seed}-{i}", "purchase", a.pan, 1, "approved", "000001") for i, a in
            enumerate(accounts)]  # fmt: skip
    return accounts, txns


async def _cancel_save_then_close(db: str, round_no: int) -> None:
    store = CardDb(db)
    accounts, txns = _rows(50, round_no)
    saving = asyncio.create_task(store.save(accounts, txns))
    for _ in range(1 + round_no % 4):  # cancel at different points of the write
        await asyncio.sleep(0)
    saving.cancel()
    await store.close()
    await store.close()  # idempotent
    assert saving.cancelled() or saving.done()


async def _cancel_rounds(tmp_path: Path, rounds: int) -> None:
    db = str(tmp_path / "cancel.db")
    for round_no in range(rounds):
        await _cancel_save_then_close(db, round_no)
    ledger = Ledger()
    store = CardDb(db)
    await store.load(ledger)
    await store.close()
    # A cancelled caller does not drop its rows: every save that started was committed.
    assert len(ledger.txns) == 50 * rounds


async def test_cancelled_save_then_close_never_crashes_or_loses_rows(tmp_path: Path) -> None:
    """50 rounds of cancel(save) + close(): no crash (was a segfault), no row lost."""
    await _cancel_rounds(tmp_path, 50)


@pytest.mark.slow
async def test_cancelled_save_then_close_1000_times(tmp_path: Path) -> None:
    """The same, 1,000 rounds."""
    await _cancel_rounds(tmp_path, 1000)


async def test_durable_answers_sent_together_are_all_committed_before_they_leave(
    tmp_path: Path,
) -> None:
    """50 purchases in flight at once (group commits): once every answer is in, the
    file already holds every debit, with write-behind an hour away."""
    from issuer_sim.app import start_issuer
    from posp.lab.inprocess_hsm import inprocess_hsm_client
    from tests.network.conftest import issuer_settings

    db = str(tmp_path / "issuer.db")
    issuer = await start_issuer(
        issuer_settings(db=db, durable=True, flush_interval_s=3600), hsm=inprocess_hsm_client()
    )
    link = await open_link(issuer.port)
    try:
        before = await _balance_in_file(db, PAN)
        amounts = [1000 + i for i in range(50)]
        answers = await asyncio.gather(*(link.send(purchase(a, pin=PIN)) for a in amounts))
        assert [a.get(39) for a in answers] == ["00"] * len(amounts)
        assert await _balance_in_file(db, PAN) == before - sum(amounts)
    finally:
        await link.close()
        await issuer.close()
