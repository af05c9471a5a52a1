"""A TUF repository and simulated terminals on one temporary directory (tests, bench)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuf.api.metadata import Metadata, Targets
from tuf.api.serialization.json import JSONSerializer

from posp.tms.keys import KeyStore, KeyType
from posp.tms.repository import TufRepository
from terminals.updater import DirectoryFetcher, TerminalSoftware, TerminalUpdater

BASE_URL = "http://tms.invalid/"
MODEL = "P8"
ACQUIRER = "48020000"


@dataclass
class Lab:
    tmp: Path
    repo: TufRepository
    built_in_root: bytes
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def create(cls, tmp: Path, key_type: KeyType = "ed25519", **init: object) -> Lab:
        keys = KeyStore(tmp / "keys" / "offline", tmp / "keys" / "online")
        repo = TufRepository(tmp / "repo", keys)
        repo.init(key_type, **init)  # type: ignore[arg-type]
        return cls(tmp, repo, (repo.metadata_dir / "1.root.json").read_bytes())

    def package(self, size_bytes: int = 4096, name: str = "") -> Path:
        path = self.tmp / f"pkg-{name or next(self._ids)}.bin"
        path.write_bytes(os.urandom(size_bytes))
        return path

    def publish(self, version: str, size_bytes: int = 4096, **fields: object) -> str:
        fields.setdefault("model", MODEL)
        fields.setdefault("acquirer_id", ACQUIRER)
        path, _ = self.repo.publish(self.package(size_bytes), version=version, **fields)  # type: ignore[arg-type]
        return path

    def terminal(
        self,
        rewrite: Callable[[str, bytes], bytes] | None = None,
        *,
        max_package_bytes: int = 1 << 26,
        **software: object,
    ) -> TerminalUpdater:
        software.setdefault("model", MODEL)
        software.setdefault("acquirer_id", ACQUIRER)
        work = self.tmp / "terminals" / str(next(self._ids))
        return TerminalUpdater(
            TerminalSoftware(**software),  # type: ignore[arg-type]
            self.built_in_root,
            work,
            BASE_URL,
            DirectoryFetcher(self.repo.repo_dir, BASE_URL, rewrite),
            max_package_bytes,
        )

    def metadata_name(self, role: str) -> str:
        """The served file name of the current version of ``role``."""
        if role == "timestamp":
            return "metadata/timestamp.json"
        version = (
            self.repo.snapshot().signed.version
            if role == "snapshot"
            else self.repo.targets().signed.version
        )
        return f"metadata/{version}.{role}.json"


def compact(md: Metadata[Targets]) -> bytes:
    return md.to_bytes(JSONSerializer(compact=True))
