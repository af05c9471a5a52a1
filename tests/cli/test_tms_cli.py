"""``posp tms …``: keys, publishing, parameters, rollouts; misuse exits 2 naming the argument."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import Posp


def _package(tmp_path: Path, size_bytes: int = 2048) -> str:
    path = tmp_path / "app.bin"
    path.write_bytes(os.urandom(size_bytes))
    return str(path)


def test_keys_init_publish_rotate_and_list(posp: Posp, tmp_path: Path) -> None:
    made = posp("tms", "keys", "init", "--key-type", "ecdsa-p256", "--json")
    assert made.code == 0 and {r["role"] for r in made.json()} == {
        "root",
        "targets",
        "snapshot",
        "timestamp",
    }
    assert "PRIVATE" not in made.out
    published = posp(
        "tms", "publish", _package(tmp_path), "--version", "V2.0", "--model", "P8", "--json"
    )
    assert published.code == 0 and published.json()[0]["target"] == "P8/V2.0.pkg"
    rotated = posp("tms", "keys", "rotate", "targets", "--json").json()
    assert [r["state"] for r in rotated] == ["new", "revoked"]
    listed = posp("tms", "keys", "list")
    assert listed.code == 0 and "root v2" in listed.out
    assert (tmp_path / "data" / "tms" / "keys" / "offline" / "revoked").is_dir()


def test_publish_misuse_exits_2_naming_the_argument(posp: Posp, tmp_path: Path) -> None:
    assert posp("tms", "keys", "init").code == 0
    bad = posp("tms", "publish", _package(tmp_path), "--version", "V2.0.0.0.0", "--model", "P8")
    assert bad.code == 2 and "--version" in bad.err and "Traceback" not in bad.err
    missing = posp("tms", "publish", str(tmp_path / "nope"), "--version", "V2", "--model", "P8")
    assert missing.code == 2 and "PACKAGE" in missing.err


def test_revoking_the_only_key_of_a_role_fails_without_writing(posp: Posp) -> None:
    keys = posp("tms", "keys", "init", "--json").json()
    timestamp_key = next(r["key id"] for r in keys if r["role"] == "timestamp")
    result = posp("tms", "keys", "revoke", timestamp_key)
    assert result.code == 1 and "below its threshold" in result.err
    assert "root v1" in posp("tms", "keys", "list").out


def test_params_set_and_show_merge_group_defaults_under_terminal_overrides(posp: Posp) -> None:
    group = posp(
        "tms",
        "params",
        "set",
        "--group",
        "default",
        "--hotline",
        "95516",
        "--purchase-cap-minor",
        "500000",
        "--json",
    )
    assert group.code == 0
    posp("tms", "params", "set", "--terminal", "T0000001", "--purchase-cap-minor", "100")
    shown = posp("tms", "params", "show", "--terminal", "T0000001", "--json").json()
    merged = next(r for r in shown if r["level"] == "effective")
    assert merged["hotline"] == "95516" and merged["purchase_cap_minor"] == 100
    bad = posp("tms", "params", "set", "--group", "default", "--txn-mask", "12")
    assert bad.code == 2 and "--txn-mask" in bad.err
    both = posp("tms", "params", "show", "--group", "g", "--terminal", "t")
    assert both.code == 2


def test_rollout_start_status_pause_resume_halt(posp: Posp, tmp_path: Path) -> None:
    posp("tms", "keys", "init")
    posp("tms", "publish", _package(tmp_path), "--version", "V2.0", "--model", "P8")
    for n in range(5):
        assert posp("tms", "group", f"T000000{n}", "g1").code == 0
    started = posp(
        "tms",
        "rollout",
        "start",
        "--group",
        "g1",
        "--target",
        "P8/V2.0.pkg",
        "--waves",
        "20,100",
        "--json",
    )
    assert started.code == 0 and [w["terminals"] for w in started.json()] == [1, 4]
    assert posp("tms", "rollout", "pause", "1").code == 0
    assert posp("tms", "rollout", "resume", "1").code == 0
    halted = posp("tms", "rollout", "halt", "1")
    assert halted.code == 0 and "halted" in halted.out
    listed = posp("tms", "rollout", "status", "--json").json()
    assert listed[0]["state"] == "halted"
    versions = posp("tms", "versions", "--group", "g1", "--json").json()
    assert len(versions) == 5
    unknown = posp("tms", "rollout", "start", "--group", "g1", "--target", "P8/V9.pkg")
    assert unknown.code == 2 and "--target" in unknown.err
    waves = posp(
        "tms", "rollout", "start", "--group", "g1", "--target", "P8/V2.0.pkg", "--waves", "50,10"
    )
    assert waves.code == 2 and "--waves" in waves.err
