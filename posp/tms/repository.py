"""The TMS's TUF repository on disk: root / targets / snapshot / timestamp
metadata (python-tuf's Metadata API) and the packages they describe.

Layout under ``repo_dir``::

    metadata/<N>.root.json        every root version (terminals walk the chain)
    metadata/<N>.targets.json     consistent snapshots: old versions stay
    metadata/<N>.snapshot.json
    metadata/timestamp.json       the only unversioned file
    targets/<model>/<sha256>.<version>.pkg

Invariants:
* Every change bumps the version of each role it touches and re-signs it
  with every key of that role found in the key store; a role whose key files
  do not reach its threshold raises TmsError before that role is written.
* A new root is signed by the old root's keys and the new root's keys (TUF's
  rotation rule), so a terminal holding any earlier root can walk to it.
* The timestamp carries the snapshot's version, length and hash, the snapshot
  the targets'; metadata is compact JSON, so a byte changed anywhere changes a
  signed or hashed value, and a file from another repository state does not
  match.
* Metadata is written to a temporary file and renamed, targets before snapshot
  before timestamp, so a reader never sees a timestamp naming missing files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from securesystemslib.signer import Signer
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from posp.tms.keys import ROLES, KeyStore, KeyType, TmsError, TmsUsageError, generate_signer

T = TypeVar("T", Root, Timestamp, Snapshot, Targets)
CUSTOM_KEY: Final = "posp"
_VERSION_TEXT = re.compile(r"^[A-Za-z0-9._-]{1,8}$")
_MODEL_TEXT = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
DEFAULT_EXPIRY: Final[Mapping[str, dt.timedelta]] = {
    "root": dt.timedelta(days=365),
    "targets": dt.timedelta(days=90),
    "snapshot": dt.timedelta(days=7),
    "timestamp": dt.timedelta(days=1),
}


def _meta_of(version: int, raw: bytes) -> MetaFile:
    """Version, length and hash: a file from another repository state does not match."""
    return MetaFile(version, len(raw), {"sha256": hashlib.sha256(raw).hexdigest()})


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class PackageInfo:
    """The custom fields a target carries; terminals check every one of them."""

    model: str
    acquirer_id: str
    min_hardware: int
    version: str
    version_counter: int

    def as_custom(self) -> dict[str, Any]:
        return {
            CUSTOM_KEY: {
                "model": self.model,
                "acquirer_id": self.acquirer_id,
                "min_hardware": self.min_hardware,
                "version": self.version,
                "version_counter": self.version_counter,
            }
        }

    @classmethod
    def from_custom(cls, custom: Any) -> PackageInfo:
        """Raises ValueError when a field is missing or of the wrong type."""
        fields_ = custom.get(CUSTOM_KEY) if isinstance(custom, dict) else None
        if not isinstance(fields_, dict):
            raise ValueError("no posp custom fields")
        info = cls(
            fields_.get("model"),  # type: ignore[arg-type]
            fields_.get("acquirer_id"),  # type: ignore[arg-type]
            fields_.get("min_hardware"),  # type: ignore[arg-type]
            fields_.get("version"),  # type: ignore[arg-type]
            fields_.get("version_counter"),  # type: ignore[arg-type]
        )
        texts = (info.model, info.acquirer_id, info.version)
        numbers = (info.min_hardware, info.version_counter)
        if not all(isinstance(v, str) for v in texts) or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in numbers
        ):
            raise ValueError("posp custom fields of the wrong type")
        return info


@dataclass(slots=True)
class TufRepository:
    """One repository directory and the key store that signs it."""

    repo_dir: Path
    keys: KeyStore
    expiry: Mapping[str, dt.timedelta] = field(default_factory=lambda: dict(DEFAULT_EXPIRY))
    clock: Callable[[], dt.datetime] = utc_now

    @property
    def metadata_dir(self) -> Path:
        return self.repo_dir / "metadata"

    @property
    def targets_dir(self) -> Path:
        return self.repo_dir / "targets"

    # --- creation -------------------------------------------------------------------
    def init(
        self,
        key_type: KeyType = "ed25519",
        *,
        key_counts: Mapping[str, int] | None = None,
        thresholds: Mapping[str, int] | None = None,
    ) -> dict[str, list[str]]:
        """New keys for every role, root v1 and empty targets; the key ids by role."""
        if (self.metadata_dir / "1.root.json").exists():
            raise TmsError(f"{self.metadata_dir} already holds a repository")
        counts = {role: 1 for role in ROLES} | dict(key_counts or {})
        limits = {role: 1 for role in ROLES} | dict(thresholds or {})
        root = Root(expires=self._expires("root"), consistent_snapshot=True)
        made: dict[str, list[str]] = {}
        for role in ROLES:
            if not 1 <= limits[role] <= counts[role]:
                raise TmsUsageError(f"--{role}-threshold", f"needs 1..{counts[role]} keys")
            for _ in range(counts[role]):
                signer = generate_signer(key_type)
                root.add_key(signer.public_key, role)
                self.keys.save(role, signer)
                made.setdefault(role, []).append(signer.public_key.keyid)
            root.roles[role].threshold = limits[role]
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self._write_root(Metadata(root), previous=None)
        self._commit_targets(Metadata(Targets(expires=self._expires("targets"))), root)
        return made

    # --- reading --------------------------------------------------------------------
    def root(self) -> Metadata[Root]:
        versions = [int(p.name.split(".")[0]) for p in self.metadata_dir.glob("*.root.json")]
        if not versions:
            raise TmsError(f"no repository in {self.repo_dir} (run `posp tms keys init`)")
        return Metadata[Root].from_file(str(self.metadata_dir / f"{max(versions)}.root.json"))

    def timestamp(self) -> Metadata[Timestamp]:
        return Metadata[Timestamp].from_file(str(self.metadata_dir / "timestamp.json"))

    def snapshot(self) -> Metadata[Snapshot]:
        version = self.timestamp().signed.snapshot_meta.version
        return Metadata[Snapshot].from_file(str(self.metadata_dir / f"{version}.snapshot.json"))

    def targets(self) -> Metadata[Targets]:
        version = self.snapshot().signed.meta["targets.json"].version
        return Metadata[Targets].from_file(str(self.metadata_dir / f"{version}.targets.json"))

    def packages(self) -> dict[str, PackageInfo]:
        return {
            path: PackageInfo.from_custom(target.custom)
            for path, target in self.targets().signed.targets.items()
        }

    # --- publishing -----------------------------------------------------------------
    def publish(
        self,
        package: Path,
        *,
        version: str,
        model: str,
        acquirer_id: str = "",
        min_hardware: int = 0,
        version_counter: int | None = None,
        max_bytes: int | None = None,
    ) -> tuple[str, PackageInfo]:
        """Add ``package`` as a target; the counter defaults to the model's highest + 1."""
        if not _VERSION_TEXT.match(version):
            raise TmsUsageError("--version", "1-8 characters of A-Z a-z 0-9 . _ -")
        if not _MODEL_TEXT.match(model):
            raise TmsUsageError("--model", "1-32 characters of A-Z a-z 0-9 . _ -")
        if not package.is_file():
            raise TmsUsageError("PACKAGE", f"{package} is not a file")
        if max_bytes is not None and package.stat().st_size > max_bytes:
            raise TmsUsageError("PACKAGE", f"larger than {max_bytes} bytes")
        targets = self.targets()
        self._signers("targets", self.root().signed)  # refuse before copying anything
        known = [info for info in self.packages().values() if info.model == model]
        counter = version_counter or max((i.version_counter for i in known), default=0) + 1
        if any(i.version_counter >= counter for i in known):
            raise TmsUsageError("--counter", f"{counter} is not above the model's published ones")
        info = PackageInfo(model, acquirer_id, min_hardware, version, counter)
        path = f"{model}/{version}.pkg"
        if path in targets.signed.targets:
            raise TmsUsageError("--version", f"{path} is already published")
        target = TargetFile.from_file(path, str(package), ["sha256"])
        target.unrecognized_fields["custom"] = info.as_custom()
        stored = self.targets_dir / model / f"{target.hashes['sha256']}.{version}.pkg"
        stored.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package, stored)
        targets.signed.targets[path] = target
        self._commit_targets(targets, self.root().signed)
        return path, info

    def refresh(self, *, snapshot: bool = False) -> int:
        """Re-sign the timestamp (and the snapshot) with fresh expiry; the timestamp version."""
        root = self.root().signed
        snap = self.snapshot()
        if snapshot:
            self._bump(snap, "snapshot")
            self._write_versioned(self._signed(snap, root), "snapshot")
        return self._commit_timestamp(snap, root)

    # --- keys -----------------------------------------------------------------------
    def rotate(self, role: str, key_type: KeyType = "ed25519") -> tuple[str, list[str]]:
        """A new key for ``role`` replaces all its keys; (new key id, retired key ids)."""
        old_root = self.root()
        root = Metadata[Root].from_bytes(old_root.to_bytes())
        retired = list(root.signed.roles[self._role(role)].keyids)
        new = generate_signer(key_type)
        self.keys.save(role, new)
        for keyid in retired:
            root.signed.revoke_key(keyid, role)
        root.signed.add_key(new.public_key, role)
        root.signed.roles[role].threshold = 1
        self._write_root(root, previous=old_root)
        for keyid in retired:
            self.keys.retire(role, keyid)
        self._resign_after_key_change(role, root.signed)
        return new.public_key.keyid, retired

    def revoke(self, keyid: str) -> str:
        """Remove one key from its role (the role must keep its threshold); its role."""
        old_root = self.root()
        root = Metadata[Root].from_bytes(old_root.to_bytes())
        role = next((r for r in ROLES if keyid in root.signed.roles[r].keyids), None)
        if role is None:
            raise TmsUsageError("KEYID", f"{keyid[:16]} is in no role")
        remaining = len(root.signed.roles[role].keyids) - 1
        if remaining < root.signed.roles[role].threshold:
            raise TmsError(f"{role} would keep {remaining} keys, below its threshold; rotate it")
        root.signed.revoke_key(keyid, role)
        self._write_root(root, previous=old_root)
        self.keys.retire(role, keyid)
        self._resign_after_key_change(role, root.signed)
        return role

    def _resign_after_key_change(self, role: str, root: Root) -> None:
        if role == "targets":
            self._commit_targets(self.targets(), root)
        elif role == "snapshot":
            self.refresh(snapshot=True)
        elif role == "timestamp":
            self.refresh()

    # --- internals ------------------------------------------------------------------
    def _role(self, role: str) -> str:
        if role not in ROLES:
            raise TmsUsageError("ROLE", f"unknown role {role!r} (one of {', '.join(ROLES)})")
        return role

    def _expires(self, role: str) -> dt.datetime:
        return (self.clock() + self.expiry[role]).replace(microsecond=0)

    def _bump(self, md: Metadata[Any], role: str) -> None:
        md.signed.version += 1
        md.signed.expires = self._expires(role)

    def _signers(self, role: str, root: Root) -> list[Signer]:
        found = [self.keys.load(role, keyid) for keyid in root.roles[role].keyids]
        signers: list[Signer] = [s for s in found if s is not None]
        if len(signers) < root.roles[role].threshold:
            raise TmsError(
                f"{role}: {len(signers)} key files present, threshold is"
                f" {root.roles[role].threshold} (mount the offline keys?)"
            )
        return signers

    def _signed(self, md: Metadata[T], root: Root, *extra_roots: Root) -> Metadata[T]:
        md.signatures.clear()
        role = md.signed.type
        signers = {
            s.public_key.keyid: s for r in (root, *extra_roots) for s in self._signers(role, r)
        }
        for signer in signers.values():
            md.sign(signer, append=True)
        return md

    def _write_root(self, md: Metadata[Root], previous: Metadata[Root] | None) -> None:
        if previous is not None:
            md.signed.version = previous.signed.version + 1
            md.signed.expires = self._expires("root")
            self._signed(md, md.signed, previous.signed)
        else:
            self._signed(md, md.signed)
        self._write_versioned(md, "root")

    def _commit_targets(self, targets: Metadata[Targets], root: Root) -> None:
        if (self.metadata_dir / "timestamp.json").exists():
            self._bump(targets, "targets")
            snap = self.snapshot()
            self._bump(snap, "snapshot")
        else:  # the first commit: every role at version 1
            snap = Metadata(Snapshot(expires=self._expires("snapshot")))
        raw = self._write_versioned(self._signed(targets, root), "targets")
        snap.signed.meta["targets.json"] = _meta_of(targets.signed.version, raw)
        self._write_versioned(self._signed(snap, root), "snapshot")
        self._commit_timestamp(snap, root)

    def _commit_timestamp(self, snap: Metadata[Snapshot], root: Root) -> int:
        raw = (self.metadata_dir / f"{snap.signed.version}.snapshot.json").read_bytes()
        meta = _meta_of(snap.signed.version, raw)
        path = self.metadata_dir / "timestamp.json"
        if path.exists():
            stamp = self.timestamp()
            self._bump(stamp, "timestamp")
        else:
            stamp = Metadata(Timestamp(expires=self._expires("timestamp")))
        stamp.signed.snapshot_meta = meta
        self._atomic_write(path, self._signed(stamp, root).to_bytes(JSONSerializer(compact=True)))
        return stamp.signed.version

    def _write_versioned(self, md: Metadata[Any], role: str) -> bytes:
        raw = md.to_bytes(JSONSerializer(compact=True))
        self._atomic_write(self.metadata_dir / f"{md.signed.version}.{role}.json", raw)
        return raw

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
