"""The terminal installs only what the TUF repository signed for it: one test per
attack, each refused with its own reason while the old version stays."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Targets

from posp.tms.repository import _meta_of
from terminals.updater import SIGNATURE_FAILURE, Refusal, TerminalUpdater
from tests.tms.lab import Lab, compact


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab.create(tmp_path)


def refused(updater: TerminalUpdater, target: str, refusal: Refusal) -> None:
    """``target`` is refused for ``refusal``; the terminal keeps V1.0 and reports why."""
    assert updater.install(target) is refusal
    assert updater.software.app_version == "V1.0"
    assert updater.software.last_result == f"{SIGNATURE_FAILURE}:{refusal.code}"
    assert updater.software.status().install_result == f"{SIGNATURE_FAILURE}:{refusal.code}"


def test_a_signed_package_installs_and_switches_the_reported_version(lab: Lab) -> None:
    target = lab.publish("V2.0")
    updater = lab.terminal(app_version="V1.0")
    assert updater.install(target) is None
    assert updater.software.app_version == "V2.0"
    assert updater.software.version_report().render() == "A200905004V2.0"
    assert updater.software.last_result == "OK"


def test_tampered_package_bytes_are_refused(lab: Lab) -> None:
    target = lab.publish("V2.0")

    def flip(path: str, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if path.startswith("targets/") else data

    refused(lab.terminal(flip), target, Refusal.TAMPERED)


def test_package_longer_than_signed_is_refused(lab: Lab) -> None:
    target = lab.publish("V2.0")
    grow = lambda path, data: data + b"x" if path.startswith("targets/") else data  # noqa: E731
    refused(lab.terminal(grow), target, Refusal.TAMPERED)


def _forged_targets(lab: Lab, *signers: CryptoSigner) -> Metadata[Targets]:
    """The current targets with a forged target added, signed by ``signers`` only."""
    md = lab.repo.targets()
    md.signed.targets["P8/V9.0.pkg"] = md.signed.targets[next(iter(md.signed.targets))]
    md.signed.version += 1
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return md


def _compromise_server(lab: Lab, targets: Metadata[Targets]) -> None:
    """What an attacker holding the server and its online keys can do: serve
    ``targets`` under snapshot and timestamp metadata re-signed with those keys."""
    repo = lab.repo
    root = repo.root().signed
    raw = compact(targets)
    (repo.metadata_dir / f"{targets.signed.version}.targets.json").write_bytes(raw)
    snapshot = repo.snapshot()
    snapshot.signed.version += 1
    snapshot.signed.meta["targets.json"] = _meta_of(targets.signed.version, raw)
    repo._write_versioned(repo._signed(snapshot, root), "snapshot")
    repo._commit_timestamp(snapshot, root)


def _serve(lab: Lab, name: str, forged: bytes) -> TerminalUpdater:
    return lab.terminal(lambda path, data: forged if path == name else data)


def test_targets_signed_by_a_key_not_in_the_targets_role_are_refused(lab: Lab) -> None:
    target = lab.publish("V2.0")
    _compromise_server(lab, _forged_targets(lab, CryptoSigner.generate_ed25519()))
    refused(lab.terminal(), target, Refusal.UNKNOWN_KEY)


def test_targets_signed_by_a_revoked_rotated_out_key_are_refused(lab: Lab) -> None:
    target = lab.publish("V2.0")
    old_keyid = lab.repo.root().signed.roles["targets"].keyids[0]
    old_signer = lab.repo.keys.load("targets", old_keyid)
    assert old_signer is not None
    lab.repo.rotate("targets")
    _compromise_server(lab, _forged_targets(lab, old_signer))
    refused(lab.terminal(), target, Refusal.REVOKED_KEY)


def test_fewer_signatures_than_the_threshold_are_refused(tmp_path: Path) -> None:
    lab = Lab.create(tmp_path, key_counts={"targets": 2}, thresholds={"targets": 2})
    target = lab.publish("V2.0")
    keyids = lab.repo.root().signed.roles["targets"].keyids
    one_of_two = lab.repo.keys.load("targets", keyids[0])
    assert one_of_two is not None
    _compromise_server(lab, _forged_targets(lab, one_of_two))
    refused(lab.terminal(), target, Refusal.BELOW_THRESHOLD)


@pytest.mark.parametrize(
    ("role", "refusal"),
    [
        ("targets", Refusal.EXPIRED_TARGETS),
        ("snapshot", Refusal.EXPIRED_SNAPSHOT),
        ("timestamp", Refusal.EXPIRED_TIMESTAMP),
    ],
)
def test_expired_metadata_is_refused(lab: Lab, role: str, refusal: Refusal) -> None:
    lab.repo.expiry = {**lab.repo.expiry, role: dt.timedelta(seconds=-1)}
    refused(lab.terminal(), lab.publish("V2.0"), refusal)


def test_rollback_to_a_lower_version_counter_is_refused(lab: Lab) -> None:
    old = lab.publish("V1.5")
    newer = lab.publish("V2.0")
    updater = lab.terminal()
    assert updater.install(newer) is None
    assert updater.install(old) is Refusal.VERSION_ROLLBACK
    assert updater.software.app_version == "V2.0"
    assert updater.software.last_result.endswith("version-rollback")


def test_freeze_replaying_an_older_timestamp_is_refused(lab: Lab) -> None:
    """Freeze: once a terminal saw timestamp vN, a replayed vN-1 (still unexpired) is refused;
    a replayed timestamp that has expired is the expired-timestamp test above."""
    lab.publish("V1.5")
    stale = (lab.repo.metadata_dir / "timestamp.json").read_bytes()
    target = lab.publish("V2.0")
    updater = lab.terminal()
    updater.max_package_bytes = 1  # see the fresh timestamp, install nothing
    assert updater.install(target) is Refusal.OVERSIZE
    updater.max_package_bytes = 1 << 26
    updater.fetcher = lab.terminal(
        lambda p, d: stale if p.endswith("timestamp.json") else d
    ).fetcher
    refused(updater, target, Refusal.METADATA_ROLLBACK)


@pytest.mark.parametrize("role", ["snapshot", "targets"])
def test_mix_and_match_metadata_from_another_repository_state_is_refused(
    lab: Lab, role: str
) -> None:
    lab.publish("V1.5")
    other_state = (lab.repo.repo_dir / lab.metadata_name(role)).read_bytes()
    target = lab.publish("V2.0")
    refused(_serve(lab, lab.metadata_name(role), other_state), target, Refusal.MIX_AND_MATCH)


def test_package_for_another_model_is_refused(lab: Lab) -> None:
    refused(lab.terminal(), lab.publish("V2.0", model="Q9"), Refusal.WRONG_MODEL)


def test_package_for_another_acquirer_is_refused(lab: Lab) -> None:
    refused(lab.terminal(), lab.publish("V2.0", acquirer_id="99999999"), Refusal.WRONG_ACQUIRER)


def test_package_needing_newer_hardware_is_refused(lab: Lab) -> None:
    refused(
        lab.terminal(hardware_rev=1), lab.publish("V2.0", min_hardware=2), Refusal.HARDWARE_TOO_OLD
    )


def test_oversize_package_is_refused_before_download(lab: Lab) -> None:
    target = lab.publish("V2.0", size_bytes=8192)
    refused(lab.terminal(max_package_bytes=4096), target, Refusal.OVERSIZE)


def test_unknown_package_is_refused(lab: Lab) -> None:
    lab.publish("V2.0")
    refused(lab.terminal(), "P8/V7.0.pkg", Refusal.NOT_FOUND)


def _mutate(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ rng.randrange(1, 256)]) + data[at + 1 :]


def _mutation_trials(lab: Lab, count: int, seed: int) -> list[Refusal | None]:
    target = lab.publish("V2.0", size_bytes=2048)
    victims = [
        "targets/P8/" + next((lab.repo.targets_dir / "P8").iterdir()).name,
        lab.metadata_name("targets"),
        lab.metadata_name("snapshot"),
        lab.metadata_name("timestamp"),
    ]
    rng = random.Random(seed)
    outcomes = []
    for _ in range(count):
        victim = rng.choice(victims)
        mutated = _mutate((lab.repo.repo_dir / victim).read_bytes(), rng)
        outcomes.append(_serve(lab, victim, mutated).install(target))
    return outcomes


def test_100_random_byte_mutations_of_package_or_metadata_install_nothing(lab: Lab) -> None:
    outcomes = _mutation_trials(lab, 100, seed=17)
    assert None not in outcomes
    assert {Refusal.TAMPERED, Refusal.MIX_AND_MATCH} <= set(outcomes)


@pytest.mark.slow
def test_1000_random_byte_mutations_of_package_or_metadata_install_nothing(lab: Lab) -> None:
    assert None not in _mutation_trials(lab, 1000, seed=1017)


def test_root_rotation_v1_to_v2_new_signatures_install_old_key_alone_is_refused(lab: Lab) -> None:
    """The terminal ships root v1; the operator rotates root and targets keys. A package
    published afterwards installs; a root or targets signed only by an old key does not."""
    old_root_keyid = lab.repo.root().signed.roles["root"].keyids[0]
    old_root_signer = lab.repo.keys.load("root", old_root_keyid)
    old_targets_signer = lab.repo.keys.load(
        "targets", lab.repo.root().signed.roles["targets"].keyids[0]
    )
    assert old_root_signer is not None and old_targets_signer is not None
    lab.repo.rotate("root")
    lab.repo.rotate("targets")
    assert lab.repo.root().signed.version == 3
    target = lab.publish("V2.0")
    assert lab.terminal().install(target) is None

    _compromise_server(lab, _forged_targets(lab, old_targets_signer))
    refused(lab.terminal(), target, Refusal.REVOKED_KEY)

    # a root v4 made with the old root key alone, trusting an attacker's targets key
    attacker = CryptoSigner.generate_ed25519()
    root = Metadata[Root].from_bytes(lab.repo.root().to_bytes())
    root.signed.version = 4
    for keyid in list(root.signed.roles["targets"].keyids):
        root.signed.revoke_key(keyid, "targets")
    root.signed.add_key(attacker.public_key, "targets")
    root.signatures.clear()
    root.sign(old_root_signer)
    (lab.repo.metadata_dir / "4.root.json").write_bytes(compact(root))  # type: ignore[arg-type]
    refused(lab.terminal(), target, Refusal.REVOKED_KEY)


def test_ecdsa_p256_repository_signs_packages_terminals_install(tmp_path: Path) -> None:
    lab = Lab.create(tmp_path, "ecdsa-p256")
    assert lab.terminal().install(lab.publish("V2.0")) is None
    assert (
        Metadata[Targets]
        .from_bytes((lab.repo.repo_dir / lab.metadata_name("targets")).read_bytes())
        .signed.version
        == 2
    )
