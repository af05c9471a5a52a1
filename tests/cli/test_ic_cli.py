"""``posp ic capk|aid``: validated entries, a version bumped on every change,
bad input exits 2 naming the field; ``posp terminal show`` shows the management state."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .conftest import MERCHANT, Posp

RID = "A000000333"
MODULUS = "C1" * 128


def _hash(rid: str, index: str, modulus: str, exponent: str) -> str:
    return hashlib.sha1(bytes.fromhex(rid + index + modulus + exponent)).hexdigest().upper()


def _capk_args(index: str = "08", **change: str) -> list[str]:
    values = {
        "rid": RID,
        "index": index,
        "modulus": MODULUS,
        "exponent": "03",
        "expiry": "301231",
        "hash": _hash(RID, index, MODULUS, "03"),
        **change,
    }
    return [arg for k, v in values.items() for arg in (f"--{k}", v)]


def test_capk_add_list_remove_bumps_the_version_each_time(posp: Posp) -> None:
    first = posp("ic", "capk", "add", *_capk_args("08"))
    assert first.code == 0, first.err
    second = posp("ic", "capk", "add", *_capk_args("09"))
    assert second.code == 0
    listed = posp("ic", "capk", "list", "--json").json()
    assert [(r["rid"], r["index"]) for r in listed] == [(RID, "08"), (RID, "09")]
    assert "set version 2" in posp("ic", "capk", "list").out
    assert posp("ic", "capk", "remove", "--rid", RID, "--index", "08").code == 0
    assert "set version 3" in posp("ic", "capk", "list").out
    missing = posp("ic", "capk", "remove", "--rid", RID, "--index", "08")
    assert missing.code == 2 and "--rid" in missing.err


def test_capk_with_a_wrong_hash_exits_2_naming_the_hash(posp: Posp) -> None:
    bad = posp("ic", "capk", "add", *_capk_args(hash="00" * 20))
    assert bad.code == 2 and "hash" in bad.err and "Traceback" not in bad.err
    assert posp("ic", "capk", "list", "--json").json() == []


def test_capk_bad_fields_exit_2_naming_each(posp: Posp) -> None:
    cases = {
        "--rid": _capk_args(rid="A0000003"),
        "--expiry": _capk_args(expiry="301332"),
        "--exponent": _capk_args(exponent="05"),
        "--modulus": _capk_args(modulus="ZZ"),
    }
    for flag, args in cases.items():
        result = posp("ic", "capk", "add", *args)
        assert result.code == 2 and flag in result.err, (flag, result.err)


def test_aid_add_and_bad_length_named(posp: Posp) -> None:
    added = posp("ic", "aid", "add", "--aid", "A000000333010101", "--floor-limit-minor", "0")
    assert added.code == 0, added.err
    short = posp("ic", "aid", "add", "--aid", "A0000003")
    assert short.code == 2 and "--aid" in short.err
    assert [r["aid"] for r in posp("ic", "aid", "list", "--json").json()] == ["A000000333010101"]


def test_import_is_all_or_nothing_and_names_the_bad_entry(posp: Posp, tmp_path: Path) -> None:
    good = {
        "rid": RID,
        "index": "08",
        "modulus": MODULUS,
        "exponent": "03",
        "expiry": "301231",
        "hash": _hash(RID, "08", MODULUS, "03"),
    }
    path = tmp_path / "capks.json"
    path.write_text(json.dumps([good, {**good, "index": "09"}]))
    bad = posp("ic", "capk", "import", str(path))
    assert bad.code == 2 and "entry 2" in bad.err and "hash" in bad.err
    assert posp("ic", "capk", "list", "--json").json() == []
    path.write_text(json.dumps([good]))
    assert posp("ic", "capk", "import", str(path)).code == 0
    assert len(posp("ic", "capk", "list", "--json").json()) == 1


def test_terminal_show_includes_the_management_state(posp: Posp, merchant: str) -> None:
    assert posp("terminal", "add", "--id", "10000001", "--merchant", merchant).code == 0
    assert posp("ic", "capk", "add", *_capk_args()).code == 0
    shown = posp("terminal", "show", "10000001", "--json").json()[0]
    assert shown["terminal_id"] == "10000001" and shown["merchant_id"] == MERCHANT
    assert shown["management"]["CAPK held / current"] == "- / 1"
    table = posp("terminal", "show", "10000001")
    assert "Terminal management" in table.out and "application version" in table.out
