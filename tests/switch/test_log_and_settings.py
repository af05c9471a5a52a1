"""Logs never carry secrets; settings validate with messages naming the key."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from posp.errors import ConfigError
from posp.log import configure_logging, mask_text
from posp.settings import load_settings
from posp.store import Store
from tests.switch.conftest import TERMINAL_ID
from tests.switch.termclient import TEST_PAN, TEST_TMK_HEX, SimTerminal


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", "debug", stream)
    yield stream
    configure_logging()


def test_mask_text_masks_pan_track_and_key_like_hex() -> None:
    text = mask_text(f"pan {TEST_PAN} track {TEST_PAN}D25121010000 key U{'0123456789ABCDEF' * 2}")
    assert TEST_PAN not in text and "0123456789ABCDEF" not in text
    assert "622588******0001" in text


def test_secret_keys_are_starred_and_bytes_shown_as_length(json_log: io.StringIO) -> None:
    structlog.get_logger().info("x", tmk="0123", pin_block=b"\x01" * 8, pan_masked="622588***")
    line = json.loads(json_log.getvalue())
    assert line["tmk"] == "***" and line["pin_block"] == "***"
    assert line["pan_masked"] == "622588***"


async def test_sign_in_and_purchase_logs_hold_no_pan_track_or_key(
    json_log: io.StringIO, terminal: SimTerminal, store: Store
) -> None:
    await terminal.sign_in("004")
    purchase = terminal.purchase()
    purchase[35] = TEST_PAN + "=2512101" + "0" * 10
    purchase[52] = bytes.fromhex("1A2B3C4D5E6F7081")
    purchase[53] = "2600000000000000"
    await terminal.exchange(terminal.encode(purchase, mac=True))
    bad = terminal.purchase()
    bad[64] = b"DEADBEEF"
    await terminal.exchange(terminal.encode(bad))
    text = json_log.getvalue()
    assert '"answered"' in text and '"terminal_id": "10000001"' in text  # context bound
    record = await store.get_terminal(TERMINAL_ID)
    assert record is not None and terminal.keys is not None and terminal.keys.tdk is not None
    secrets = [
        TEST_PAN,
        "D2512101",
        "1A2B3C4D5E6F7081",
        TEST_TMK_HEX,
        terminal.keys.pik.hex().upper(),
        terminal.keys.mak.hex().upper(),
        terminal.keys.tdk.hex().upper(),
    ]
    secrets += [
        k[1:] if k[0] in "UXZ" else k
        for k in (record.tpk_lmk or "", record.tak_lmk or "", record.tmk_lmk or "")
        if k
    ]
    for secret in secrets:
        assert secret.upper() not in text.upper(), "a secret reached the log"


def test_settings_defaults_work_out_of_the_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSP_CONFIG", raising=False)
    settings = load_settings()
    assert settings.terminal_port == 5800 and settings.limits.max_in_flight == 5000
    assert settings.store_url.startswith("sqlite:///") and settings.uses_test_pan_hash_key


def test_settings_precedence_is_arguments_env_then_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "posp.toml"
    config.write_text("node_id = 7\n[limits]\nmax_connections = 10\nidle_timeout_s = 5\n")
    monkeypatch.setenv("POSP_LIMITS__MAX_CONNECTIONS", "12")
    settings = load_settings(config)
    assert settings.node_id == 7
    assert settings.limits.max_connections == 12
    assert settings.limits.idle_timeout_s == 5
    assert load_settings(config, node_id=9).node_id == 9


def test_bad_setting_names_the_key_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSP_LIMITS__MAX_IN_FLIGHT", "lots")
    with pytest.raises(ConfigError, match=r"limits\.max_in_flight \(POSP_LIMITS__MAX_IN_FLIGHT\)"):
        load_settings()


def test_out_of_range_node_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="node_id"):
        load_settings(node_id=100)


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
