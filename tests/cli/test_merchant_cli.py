"""``posp merchant …``: registry changes, listings and argument errors."""

from __future__ import annotations

import pytest

from .conftest import MERCHANT, Posp


def test_added_merchant_is_listed_and_shown(posp: Posp, merchant: str) -> None:
    listed = posp("merchant", "list", "--json")
    assert listed.code == 0
    assert [m["merchant_id"] for m in listed.json()] == [MERCHANT]
    shown = posp("merchant", "show", MERCHANT, "--json").json()[0]
    assert (shown["name"], shown["category_code"], shown["status"]) == (
        "Test shop",
        "5411",
        "active",
    )


def test_table_output_names_the_merchant(posp: Posp, merchant: str) -> None:
    result = posp("merchant", "list")
    assert result.code == 0 and MERCHANT in result.out and "Test shop" in result.out


def test_disable_then_enable_changes_status(posp: Posp, merchant: str) -> None:
    assert posp("merchant", "disable", MERCHANT, "--json").json()[0]["status"] == "disabled"
    assert posp("merchant", "enable", MERCHANT, "--json").json()[0]["status"] == "active"


def test_duplicate_merchant_exits_2_naming_id(posp: Posp, merchant: str) -> None:
    result = posp("merchant", "add", "--id", MERCHANT, "--name", "Again", "--mcc", "5411")
    assert result.code == 2 and "--id" in result.err and "already exists" in result.err
    assert "Traceback" not in result.err


def test_bad_mcc_exits_2_naming_mcc(posp: Posp) -> None:
    result = posp("merchant", "add", "--id", MERCHANT, "--name", "Shop", "--mcc", "54X1")
    assert result.code == 2 and "--mcc" in result.err


def test_short_merchant_id_exits_2_naming_id(posp: Posp) -> None:
    result = posp("merchant", "add", "--id", "12345", "--name", "Shop", "--mcc", "5411")
    assert result.code == 2 and "--id" in result.err and "15" in result.err


def test_missing_required_argument_exits_2_naming_it(posp: Posp) -> None:
    result = posp("merchant", "add", "--id", MERCHANT, "--mcc", "5411")
    assert result.code == 2 and "--name" in result.err


def test_unknown_merchant_show_exits_2(posp: Posp) -> None:
    assert posp("merchant", "add", "--id", MERCHANT, "--name", "Shop", "--mcc", "5411").code == 0
    result = posp("merchant", "show", "999999999999999")
    assert result.code == 2 and "no merchant 999999999999999" in result.err


def test_bad_config_setting_exits_2_naming_the_key(
    posp: Posp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSP_TERMINAL_PORT", "not-a-port")
    result = posp("merchant", "list")
    assert result.code == 2 and "terminal_port" in result.err
