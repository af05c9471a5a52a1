"""The TUF repository on disk: versions, re-signing, key custody and revocation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from posp.tms.keys import KeyStore, TmsError
from posp.tms.repository import PackageInfo, TufRepository
from tests.tms.lab import Lab


def test_refresh_re_signs_the_timestamp_and_terminals_still_install(tmp_path: Path) -> None:
    lab = Lab.create(tmp_path)
    target = lab.publish("V2.0")
    before = lab.repo.timestamp().signed.version
    assert lab.repo.refresh() == before + 1
    assert lab.repo.refresh(snapshot=True) == before + 2
    assert lab.terminal().install(target) is None


def test_offline_key_files_are_0600_and_encrypted_with_the_passphrase(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "off", tmp_path / "on", b"correct horse")
    TufRepository(tmp_path / "repo", keys).init()
    root_file = next((tmp_path / "off").glob("root-*.pem"))
    assert stat.S_IMODE(root_file.stat().st_mode) == 0o600
    assert b"ENCRYPTED" in root_file.read_bytes()
    assert b"ENCRYPTED" not in next((tmp_path / "on").glob("timestamp-*.pem")).read_bytes()
    wrong = TufRepository(tmp_path / "repo", KeyStore(tmp_path / "off", tmp_path / "on", b"x"))
    with pytest.raises(TmsError, match="passphrase"):
        wrong.rotate("targets")


def test_publishing_without_the_offline_targets_key_is_refused(tmp_path: Path) -> None:
    lab = Lab.create(tmp_path)
    for key_file in (tmp_path / "keys" / "offline").glob("targets-*.pem"):
        key_file.unlink()
    with pytest.raises(TmsError, match="offline"):
        lab.publish("V2.0")


def test_revoking_one_of_two_keys_keeps_the_role_signing(tmp_path: Path) -> None:
    lab = Lab.create(tmp_path, key_counts={"targets": 2})
    keyid = lab.repo.root().signed.roles["targets"].keyids[0]
    assert lab.repo.revoke(keyid) == "targets"
    assert keyid not in lab.repo.root().signed.roles["targets"].keyids
    assert lab.terminal().install(lab.publish("V2.0")) is None


def test_init_twice_is_refused(tmp_path: Path) -> None:
    lab = Lab.create(tmp_path)
    with pytest.raises(TmsError, match="already"):
        lab.repo.init()


def test_version_counter_grows_per_model(tmp_path: Path) -> None:
    lab = Lab.create(tmp_path)
    lab.publish("V2.0")
    lab.publish("V3.0")
    lab.publish("V1.0", model="Q9")
    counters = {p: i.version_counter for p, i in lab.repo.packages().items()}
    assert counters == {"P8/V2.0.pkg": 1, "P8/V3.0.pkg": 2, "Q9/V1.0.pkg": 1}


@pytest.mark.parametrize(
    "custom",
    [
        None,
        {},
        {"posp": {"model": "P8"}},
        {
            "posp": {
                "model": "P8",
                "acquirer_id": "",
                "min_hardware": True,
                "version": "V",
                "version_counter": 1,
            }
        },
    ],
)
def test_custom_fields_missing_or_mistyped_are_refused(custom: object) -> None:
    with pytest.raises(ValueError):
        PackageInfo.from_custom(custom)
