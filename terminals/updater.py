"""The simulated terminal's software updater: a ``tuf.ngclient.Updater`` over
the root keys built into the terminal, then the terminal's own checks of the
signed custom fields.

Invariants:
* Every byte of metadata and package is verified by python-tuf; this module
  only decides what the target's signed custom fields allow (model, acquirer,
  hardware, version counter, size) and names the reason of a refusal.
* The reported application version changes only after the package verified
  and passed every check; any failure keeps the old version and leaves
  ``验证签名失败:<reason>`` for the next status upload.
* A refusal is classified after python-tuf has refused (to tell an unknown
  key from a revoked one, say); the classification never accepts anything.
"""

from __future__ import annotations

import enum
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import unquote

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root
from tuf.ngclient import FetcherInterface, Updater, Urllib3Fetcher

from posp.iso8583.tms_identity import TerminalIdentity, TerminalStatus
from posp.tms.repository import PackageInfo

SIGNATURE_FAILURE: Final = "验证签名失败"
DEFAULT_MAX_PACKAGE_BYTES: Final = 64 * 1024 * 1024


class Refusal(enum.Enum):
    """Why a package was not installed: (code, what the terminal shows after 验证签名失败)."""

    TAMPERED = ("tampered", "package bytes do not match the signed hash or length")
    UNKNOWN_KEY = ("unknown-key", "metadata signed by a key the role does not trust")
    REVOKED_KEY = ("revoked-key", "metadata signed by a revoked (rotated-out) key")
    BELOW_THRESHOLD = ("threshold", "fewer valid signatures than the role's threshold")
    EXPIRED_ROOT = ("expired-root", "root metadata expired")
    EXPIRED_TARGETS = ("expired-targets", "targets metadata expired")
    EXPIRED_SNAPSHOT = ("expired-snapshot", "snapshot metadata expired")
    EXPIRED_TIMESTAMP = ("expired-timestamp", "timestamp expired (repository frozen?)")
    METADATA_ROLLBACK = ("metadata-rollback", "metadata older than what the terminal saw")
    MIX_AND_MATCH = ("mix-and-match", "metadata not the version, length or hash signed for it")
    MALFORMED = ("malformed", "metadata does not parse")
    NOT_FOUND = ("not-found", "no such package in the signed targets")
    VERSION_ROLLBACK = ("version-rollback", "version counter not above the installed one")
    WRONG_MODEL = ("wrong-model", "package is for another terminal model")
    WRONG_ACQUIRER = ("wrong-acquirer", "package is for another acquirer")
    HARDWARE_TOO_OLD = ("hardware", "package needs newer hardware")
    OVERSIZE = ("oversize", "package larger than the terminal accepts")
    UNREACHABLE = ("unreachable", "repository could not be reached")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def display(self) -> str:
        return f"{SIGNATURE_FAILURE}:{self.code}"


class Refused(Exception):
    def __init__(self, refusal: Refusal, detail: str = "") -> None:
        super().__init__(f"{refusal.code}: {detail or refusal.value[1]}")
        self.refusal = refusal


class DirectoryFetcher(FetcherInterface):
    """Serves a repository directory for ``base_url`` without sockets (lab and
    tests); ``rewrite(relative_path, data)`` lets a test play the attacker."""

    def __init__(
        self,
        repo_dir: Path,
        base_url: str = "http://tms.invalid/",
        rewrite: Callable[[str, bytes], bytes] | None = None,
    ) -> None:
        self.repo_dir = repo_dir
        self.base_url = base_url
        self.rewrite = rewrite

    def _fetch(self, url: str) -> Iterator[bytes]:
        relative = unquote(url.removeprefix(self.base_url))
        path = self.repo_dir / relative
        if ".." in Path(relative).parts or not path.is_file():
            raise exceptions.DownloadHTTPError("not found", 404)
        data = path.read_bytes()
        return iter([self.rewrite(relative, data) if self.rewrite else data])


class _Recorder(FetcherInterface):
    """Keeps the last bytes fetched per metadata role, to explain a refusal."""

    def __init__(self, inner: FetcherInterface) -> None:
        self.inner = inner
        self.last: dict[str, bytes] = {}

    def _fetch(self, url: str) -> Iterator[bytes]:
        data = b"".join(self.inner.fetch(url))
        name = url.rsplit("/", 1)[-1]
        if name.endswith(".json"):
            self.last[name.removesuffix(".json").rsplit(".", 1)[-1]] = data
        return iter([data])


@dataclass
class TerminalSoftware:
    """What a terminal runs and what it reports (F59 A2/05, 362)."""

    model: str
    acquirer_id: str
    hardware_rev: int = 1
    app_version: str = "V1.0"
    version_counter: int = 0
    last_result: str = ""
    history: list[str] = field(default_factory=list)

    def version_report(self) -> TerminalIdentity:
        return TerminalIdentity(app_version=self.app_version)

    def status(self, param_version: str | None = None) -> TerminalStatus:
        return TerminalStatus(
            param_version=param_version,
            app_version=self.app_version,
            install_result=self.last_result or None,
        )


@dataclass
class TerminalUpdater:
    """One terminal's updater: ``trusted_root`` is the root built into the device."""

    software: TerminalSoftware
    trusted_root: bytes
    work_dir: Path
    base_url: str
    fetcher: FetcherInterface | None = None
    max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES

    def install(self, target_path: str) -> Refusal | None:
        """Fetch, verify, check and install ``target_path``; None when installed."""
        recorder = _Recorder(self.fetcher or Urllib3Fetcher())
        try:
            info, downloaded = self._fetch_verified(target_path, recorder)
        except Refused as exc:
            return self._refuse(exc.refusal)
        except exceptions.UnsignedMetadataError:
            return self._refuse(self._explain_unsigned(recorder))
        except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
            return self._refuse(classify(exc))
        self.software.history.append(self.software.app_version)
        self.software.app_version, self.software.version_counter = (
            info.version,
            info.version_counter,
        )
        self.software.last_result = "OK"
        downloaded.unlink(missing_ok=True)  # the simulator "installs" by switching its version
        return None

    def _fetch_verified(self, target_path: str, recorder: _Recorder) -> tuple[PackageInfo, Path]:
        meta_dir = self.work_dir / "metadata"
        meta_dir.mkdir(parents=True, exist_ok=True)
        updater = Updater(
            str(meta_dir),
            f"{self.base_url.rstrip('/')}/metadata/",
            str(self.work_dir / "download"),
            f"{self.base_url.rstrip('/')}/targets/",
            fetcher=recorder,
            bootstrap=self.trusted_root,
        )
        updater.refresh()
        target = updater.get_targetinfo(target_path)
        if target is None:
            raise Refused(Refusal.NOT_FOUND)
        try:
            info = PackageInfo.from_custom(target.custom)
        except ValueError as exc:
            raise Refused(Refusal.MALFORMED, str(exc)) from None
        self._check(info, target.length)
        with tempfile.NamedTemporaryFile(dir=self.work_dir, delete=False) as landing:
            path = Path(landing.name)
        try:
            updater.download_target(target, str(path))
        except (exceptions.LengthOrHashMismatchError, exceptions.DownloadLengthMismatchError):
            path.unlink(missing_ok=True)
            raise Refused(Refusal.TAMPERED) from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return info, path

    def _check(self, info: PackageInfo, length: int) -> None:
        """The terminal's own checks of the signed custom fields, before downloading."""
        sw = self.software
        if info.model != sw.model:
            raise Refused(Refusal.WRONG_MODEL)
        if info.acquirer_id not in ("", sw.acquirer_id):
            raise Refused(Refusal.WRONG_ACQUIRER)
        if info.min_hardware > sw.hardware_rev:
            raise Refused(Refusal.HARDWARE_TOO_OLD)
        if info.version_counter <= sw.version_counter:
            raise Refused(Refusal.VERSION_ROLLBACK)
        if length > self.max_package_bytes:
            raise Refused(Refusal.OVERSIZE)

    def _refuse(self, refusal: Refusal) -> Refusal:
        self.software.last_result = refusal.display
        return refusal

    def _explain_unsigned(self, recorder: _Recorder) -> Refusal:
        """Unknown key, revoked key or too few signatures, from the refused file."""
        meta_dir = self.work_dir / "metadata"
        try:
            trusted = Metadata[Root].from_file(str(meta_dir / "root.json")).signed
            older = [
                Metadata[Root].from_file(str(p)).signed
                for p in (meta_dir / "root_history").glob("*.root.json")
            ]
        except (OSError, exceptions.RepositoryError):
            return Refusal.UNKNOWN_KEY
        for role, data in recorder.last.items():
            if role not in ("root", "targets", "snapshot", "timestamp"):
                continue
            try:
                md = Metadata.from_bytes(data)
            except exceptions.RepositoryError:
                continue
            result = trusted.get_verification_result(role, md.signed_bytes, md.signatures)
            if result.verified:
                continue
            if result.signed:
                return Refusal.BELOW_THRESHOLD
            once_trusted = {k for root in older for k in root.roles[role].keyids}
            if set(md.signatures) & (once_trusted - set(trusted.roles[role].keyids)):
                return Refusal.REVOKED_KEY
            return Refusal.UNKNOWN_KEY
        return Refusal.UNKNOWN_KEY


def classify(exc: Exception) -> Refusal:
    """The refusal a python-tuf exception stands for (UnsignedMetadataError aside)."""
    text = str(exc)
    if isinstance(exc, exceptions.ExpiredMetadataError):
        for role, refusal in (
            ("timestamp", Refusal.EXPIRED_TIMESTAMP),
            ("snapshot", Refusal.EXPIRED_SNAPSHOT),
            ("targets", Refusal.EXPIRED_TARGETS),
        ):
            if role in text:
                return refusal
        return Refusal.EXPIRED_ROOT
    if isinstance(
        exc, (exceptions.LengthOrHashMismatchError, exceptions.DownloadLengthMismatchError)
    ):
        # a package's mismatch is caught at its download; this is the snapshot
        # not matching the hash the timestamp signed
        return Refusal.MIX_AND_MATCH
    if isinstance(exc, exceptions.BadVersionNumberError):
        return Refusal.MIX_AND_MATCH if text.startswith("Expected") else Refusal.METADATA_ROLLBACK
    if isinstance(exc, exceptions.DownloadError):
        return Refusal.UNREACHABLE
    return Refusal.MALFORMED
