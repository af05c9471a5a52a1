"""issuer_sim server pieces: persistence across restarts, control endpoint, settings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from issuer_sim.app import start_issuer
from issuer_sim.authorizer import original_key
from issuer_sim.control import start_control
from issuer_sim.db import CardDb
from issuer_sim.ledger import Account, Ledger
from issuer_sim.settings import load_settings
from posp.errors import ConfigError
from posp.iso8583 import Message
from posp.lab.inprocess_hsm import inprocess_hsm_client
from tests.network.cards import PAN, PIN, purchase
from tests.network.conftest import issuer_settings, metric, open_link


async def test_balances_survive_restart_with_db_file(tmp_path: Path) -> None:
    """Write-behind: after close (final flush) a restart on the same file keeps the debit
    and does not reload the card file."""
    db = str(tmp_path / "issuer.db")
    issuer = await start_issuer(issuer_settings(db=db), hsm=inprocess_hsm_client())
    link = await open_link(issuer.port)
    before = await issuer.balance(PAN)
    assert (await link.send(purchase(1111, pin=PIN))).get(39) == "00"
    await link.close()
    await issuer.close()
    again = await start_issuer(issuer_settings(db=db), hsm=inprocess_hsm_client())
    try:
        assert await again.balance(PAN) == before - 1111
        assert len(again.ledger.txns) == 1
    finally:
        await again.close()


async def _http(port: int, method: str, path: str, body: object = None) -> tuple[int, object]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b"" if body is None else json.dumps(body).encode()
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(payload)


async def test_control_endpoint_changes_rules_and_rejects_bad_input() -> None:
    """POST /rules forces a code for a PAN; a bad rule answers 400; unknown path 404."""
    issuer = await start_issuer(issuer_settings(), hsm=inprocess_hsm_client())
    control = await start_control(issuer, "127.0.0.1", 0)
    port = control.sockets[0].getsockname()[1]
    link = await open_link(issuer.port)
    try:
        status, _ = await _http(port, "POST", "/rules", {"forced_by_pan": {PAN: "05"}})
        assert status == 200
        assert (await link.send(purchase(100, pin=PIN))).get(39) == "05"
        assert (await _http(port, "POST", "/rules", {"drop_rate": 5}))[0] == 400
        assert (await _http(port, "GET", "/nowhere"))[0] == 404
        status, health = await _http(port, "GET", "/health")
        assert status == 200 and health == {"connections": 2}
    finally:
        control.close()
        await link.close()
        await issuer.close()


async def test_traffic_counts_requests_on_arrival_and_0420s_per_original() -> None:
    """GET /traffic: requests by MTI, none left in progress once answered, and every
    0420 per F90 key."""
    issuer = await start_issuer(issuer_settings(), hsm=inprocess_hsm_client())
    control = await start_control(issuer, "127.0.0.1", 0)
    port = control.sockets[0].getsockname()[1]
    link = await open_link(issuer.port)
    try:
        sent = purchase(100, pin=PIN)
        assert (await link.send(sent)).get(39) == "00"
        key = original_key(sent)
        for _ in range(2):
            reversal = Message("0420", {3: "000000", 4: "000000000100", 90: key})
            assert (await link.send(reversal)).get(39) == "00"
        status, traffic = await _http(port, "GET", "/traffic")
        assert status == 200
        assert traffic == {
            "received": {"0800": 2, "0200": 1, "0420": 2},  # the link's two sign-ons
            "in_progress": 0,
            "reversals": {key: 2},
        }
    finally:
        control.close()
        await link.close()
        await issuer.close()


def test_settings_from_env_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """POSP_ISSUER_* overrides TOML; a bad value is a ConfigError naming the key."""
    config = tmp_path / "issuer.toml"
    config.write_text("port = 1234\nlatency_ms = 5\n")
    monkeypatch.setenv("POSP_ISSUER_LATENCY_MS", "7")
    settings = load_settings(config)
    assert (settings.port, settings.latency_ms) == (1234, 7.0)
    with pytest.raises(ConfigError, match="drop_rate"):
        load_settings(None, drop_rate=3)


async def test_without_a_db_file_nothing_is_stored_and_flush_forgets_dirty_marks() -> None:
    """CardDb(""): no database; load finds nothing, flush clears the dirty marks."""
    db = CardDb("")
    ledger = Ledger()
    await db.load(ledger)
    assert not ledger.accounts
    ledger.put_account(Account(PAN, "3012", "active", "1234", 100, 1000, "CUP"))
    await db.flush(ledger)
    assert not ledger.dirty_accounts and not ledger.dirty_txns
    await db.close()
    again = Ledger()
    await CardDb("").load(again)
    assert not again.accounts


async def test_request_counts_by_mti_and_code() -> None:
    """issuer_sim_requests_total counts every answer under its MTI and response code
    (repeated labels reuse one child)."""
    registry = CollectorRegistry()
    issuer = await start_issuer(issuer_settings(), hsm=inprocess_hsm_client(), registry=registry)
    link = await open_link(issuer.port)
    try:
        for _ in range(3):
            assert (await link.send(purchase(100, pin=PIN))).get(39) == "00"
        assert (await link.send(purchase(100, pin="000000"))).get(39) == "55"
        name = "issuer_sim_requests_total"
        assert metric(registry, name, mti="0200", response_code="00") == 3
        assert metric(registry, name, mti="0200", response_code="55") == 1
    finally:
        await link.close()
        await issuer.close()
