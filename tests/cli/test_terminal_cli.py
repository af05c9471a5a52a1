"""``posp terminal …``: TMK generation as components, import, rotation, fleets."""

from __future__ import annotations

from pathlib import Path

from posp.crypto.des import check_value
from posp.lab.fleetfile import read_fleet_file

from .conftest import MERCHANT, Posp

TMK = "0123456789ABCDEFFEDCBA9876543210"


def kcv(key_hex: str) -> str:
    return check_value(bytes.fromhex(key_hex), 3).hex().upper()


def xor_hex(a: str, b: str) -> str:
    return bytes(x ^ y for x, y in zip(bytes.fromhex(a), bytes.fromhex(b), strict=True)).hex()


def test_generated_components_xor_to_a_key_with_the_printed_kcv(posp: Posp, merchant: str) -> None:
    result = posp("terminal", "add", "--id", "10000001", "--merchant", merchant, "--json")
    assert result.code == 0, result.err
    shown = result.json()
    (c1, c2) = shown["components"]
    assert kcv(c1["component"]) == c1["kcv"] and kcv(c2["component"]) == c2["kcv"]
    assert kcv(xor_hex(c1["component"], c2["component"])) == shown["tmk_kcv"]


def test_generated_tmk_printed_once_as_components_in_the_table(posp: Posp, merchant: str) -> None:
    result = posp("terminal", "add", "--id", "10000001", "--merchant", merchant)
    assert result.code == 0
    assert "component 1" in result.out and "component 2" in result.out and "ONCE" in result.out
    shown = posp("terminal", "show", "10000001")
    assert "component" not in shown.out


def test_imported_tmk_kcv_matches_crypto_check_value(posp: Posp, merchant: str) -> None:
    result = posp(
        "terminal", "add", "--id", "10000002", "--merchant", merchant, "--tmk", TMK, "--json"
    )
    assert result.code == 0, result.err
    assert result.json()["tmk_kcv"] == kcv(TMK)
    assert "components" not in result.json()


def test_bad_tmk_exits_2_naming_tmk(posp: Posp, merchant: str) -> None:
    result = posp("terminal", "add", "--id", "10000002", "--merchant", merchant, "--tmk", "XYZ")
    assert result.code == 2 and "--tmk" in result.err and "Traceback" not in result.err
    assert posp("terminal", "list", "--json").json() == []


def test_tmk_without_odd_parity_exits_2_naming_tmk(posp: Posp, merchant: str) -> None:
    even = "1111111111111111" + "2222222222222222"
    result = posp("terminal", "add", "--id", "10000002", "--merchant", merchant, "--tmk", even)
    assert result.code == 2 and "--tmk" in result.err and "parity" in result.err


def test_unknown_merchant_exits_2_naming_merchant(posp: Posp) -> None:
    result = posp("terminal", "add", "--id", "10000002", "--merchant", MERCHANT)
    assert result.code == 2 and "--merchant" in result.err


def test_list_filters_by_merchant_and_disable_enable(posp: Posp, merchant: str) -> None:
    posp("merchant", "add", "--id", "898100000000002", "--name", "Other", "--mcc", "5812")
    posp("terminal", "add", "--id", "10000001", "--merchant", merchant, "--tmk", TMK)
    posp("terminal", "add", "--id", "20000001", "--merchant", "898100000000002", "--tmk", TMK)
    listed = posp("terminal", "list", "--merchant", merchant, "--json").json()
    assert [t["terminal_id"] for t in listed] == ["10000001"]
    assert posp("terminal", "disable", "10000001", "--json").json()[0]["status"] == "disabled"
    assert posp("terminal", "enable", "10000001", "--json").json()[0]["status"] == "active"


def test_rotate_tmk_replaces_the_key(posp: Posp, merchant: str) -> None:
    posp("terminal", "add", "--id", "10000001", "--merchant", merchant, "--tmk", TMK)
    other = "1010101010101010" + "2020202020202020"
    rotated = posp("terminal", "rotate-tmk", "10000001", "--tmk", other, "--json")
    assert rotated.code == 0 and rotated.json()["tmk_kcv"] == kcv(other)
    generated = posp("terminal", "rotate-tmk", "10000001", "--json").json()
    assert generated["tmk_kcv"] not in (kcv(other), kcv(TMK)) and len(generated["components"]) == 2


def test_provision_fleet_writes_a_fleet_file_the_terminals_read(posp: Posp, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.json"
    args = _fleet_args(fleet, 3)
    first = posp(*args)
    assert first.code == 0, first.err
    assert "LAB USE ONLY" in first.out
    terminals = read_fleet_file(fleet)
    assert [t.terminal_id for t in terminals] == ["10000001", "10000002", "10000003"]
    stored = {t["terminal_id"]: t["tmk_kcv"] for t in posp("terminal", "list", "--json").json()}
    for t in terminals:
        assert t.merchant_id == MERCHANT and stored[t.terminal_id] == kcv(t.tmk.hex())
    assert fleet.stat().st_mode & 0o777 == 0o600  # clear lab TMKs
    again = posp(*args, "--json")
    assert again.json()["kept"] == 3 and again.json()["created"] == 0
    assert [t.tmk for t in read_fleet_file(fleet)] == [t.tmk for t in terminals]
    assert not list(tmp_path.glob(".fleet.json.*.tmp"))  # replaced atomically, nothing left
    # A fleet file that no longer parses: its terminals are re-keyed only when asked to.
    fleet.write_text("{not json", encoding="utf-8")
    rekeyed = posp(*args, "--rekey-existing", "--json")
    assert rekeyed.code == 0 and rekeyed.json()["created"] == 3
    assert [t.terminal_id for t in read_fleet_file(fleet)] == ["10000001", "10000002", "10000003"]


def _fleet_args(fleet: Path, count: int = 2) -> tuple[str, ...]:
    return (
        "terminal",
        "provision-fleet",
        "--count",
        str(count),
        "--merchant",
        MERCHANT,
        "--prefix",
        "1000",
        "--fleet-file",
        str(fleet),
    )


def test_provision_fleet_refuses_to_rekey_an_existing_terminal_unless_told(
    posp: Posp, merchant: str, tmp_path: Path
) -> None:
    """A terminal keyed from custodian components keeps its TMK: the command exits 2
    naming --rekey-existing and the terminal, and writes nothing."""
    assert (
        posp("terminal", "add", "--id", "10000002", "--merchant", merchant, "--tmk", TMK).code == 0
    )
    fleet = tmp_path / "fleet.json"
    refused = posp(*_fleet_args(fleet))
    assert refused.code == 2 and "Traceback" not in refused.err
    assert "--rekey-existing" in refused.err and "10000002" in refused.err
    listed = {t["terminal_id"]: t["tmk_kcv"] for t in posp("terminal", "list", "--json").json()}
    assert listed == {"10000002": kcv(TMK)} and not fleet.exists()
    agreed = posp(*_fleet_args(fleet), "--rekey-existing", "--json")
    assert agreed.code == 0 and agreed.json()["created"] == 2
    listed = {t["terminal_id"]: t["tmk_kcv"] for t in posp("terminal", "list", "--json").json()}
    assert listed["10000002"] != kcv(TMK)


def test_provision_fleet_creates_no_missing_directory(posp: Posp, tmp_path: Path) -> None:
    """A fleet file in a directory that does not exist: exit 2 naming the directory,
    which is not created, and no merchant or terminal is registered."""
    fleet = tmp_path / "typo" / "deeper" / "fleet.json"
    result = posp(*_fleet_args(fleet))
    assert result.code == 2 and "--fleet-file" in result.err and "Traceback" not in result.err
    assert str(fleet.parent) in result.err.replace("\n", "")
    assert not (tmp_path / "typo").exists()
    for kind in ("terminal", "merchant"):
        listing = posp(kind, "list", "--json")
        # Nothing registered: an empty list, or no store at all (read-only commands
        # refuse a data directory without one).
        err = " ".join(listing.err.split())
        assert listing.json() == [] if listing.code == 0 else "does not exist" in err, err


def test_provision_fleet_rejects_bad_count(posp: Posp, tmp_path: Path) -> None:
    result = posp(
        "terminal",
        "provision-fleet",
        "--count",
        "0",
        "--merchant",
        MERCHANT,
        "--fleet-file",
        str(tmp_path / "f.json"),
    )
    assert result.code == 2 and "--count" in result.err
