"""Signing keys of the TMS's TUF repository, one PEM file per key.

Custody (README "Terminal management"): root and targets keys live in the
*offline* directory (on removable media, mounted only for ``keys init``,
``publish``, ``keys rotate``/``revoke``), snapshot and timestamp keys in the
*online* directory the serving process reads to re-sign the timestamp.

Invariants:
* A key file is ``<role>-<keyid[:16]>.pem``, PKCS#8, mode 0600, encrypted with
  the passphrase when one is given; the file name never carries key material.
* Revoked keys move to ``<dir>/revoked/``: kept for audit, never loaded again.
* Only Ed25519 and ECDSA P-256 are generated (the two profiles terminals ship).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from securesystemslib.signer import CryptoSigner

from posp.errors import PospError

KeyType = Literal["ed25519", "ecdsa-p256"]
KEY_TYPES: Final[tuple[KeyType, ...]] = ("ed25519", "ecdsa-p256")
OFFLINE_ROLES: Final = ("root", "targets")
ONLINE_ROLES: Final = ("snapshot", "timestamp")
ROLES: Final = (*OFFLINE_ROLES, *ONLINE_ROLES)


class TmsError(PospError):
    """A TMS operation that cannot be done (names the role, key id or file, never a key)."""


class TmsUsageError(TmsError):
    """A request the operator got wrong; ``argument`` names the culprit (CLI exit 2)."""

    def __init__(self, argument: str, reason: str) -> None:
        self.argument = argument
        self.reason = reason
        super().__init__(f"{argument}: {reason}")


def generate_signer(key_type: KeyType) -> CryptoSigner:
    if key_type == "ed25519":
        return CryptoSigner.generate_ed25519()
    if key_type == "ecdsa-p256":
        return CryptoSigner.generate_ecdsa()
    raise TmsUsageError("--key-type", f"{key_type!r} is not one of {', '.join(KEY_TYPES)}")


@dataclass(frozen=True, slots=True)
class KeyStore:
    """Where each role's key files live; ``passphrase`` encrypts the offline ones."""

    offline_dir: Path
    online_dir: Path
    passphrase: bytes | None = None

    def dir_for(self, role: str) -> Path:
        if role not in ROLES:
            raise TmsUsageError("ROLE", f"unknown role {role!r} (one of {', '.join(ROLES)})")
        return self.offline_dir if role in OFFLINE_ROLES else self.online_dir

    def save(self, role: str, signer: CryptoSigner) -> Path:
        folder = self.dir_for(role)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{role}-{signer.public_key.keyid[:16]}.pem"
        secret = self.passphrase if role in OFFLINE_ROLES else None
        encryption = BestAvailableEncryption(secret) if secret else NoEncryption()
        private = load_pem_private_key(signer.private_bytes, password=None)
        pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        return path

    def _path(self, role: str, keyid: str) -> Path:
        return self.dir_for(role) / f"{role}-{keyid[:16]}.pem"

    def load(self, role: str, keyid: str) -> CryptoSigner | None:
        """The signer of ``keyid`` if its file is here (an offline key may be away)."""
        path = self._path(role, keyid)
        if not path.exists():
            return None
        secret = self.passphrase if role in OFFLINE_ROLES else None
        try:
            private = load_pem_private_key(path.read_bytes(), password=secret)
        except (ValueError, TypeError) as exc:
            raise TmsError(f"key file {path} does not load (wrong passphrase?)") from exc
        signer = CryptoSigner(private)  # type: ignore[arg-type]
        if signer.public_key.keyid != keyid:
            raise TmsError(f"key file {path} does not hold key {keyid[:16]}")
        return signer

    def retire(self, role: str, keyid: str) -> None:
        """Move a revoked key's file aside (kept for audit, never used to sign again)."""
        path = self._path(role, keyid)
        if path.exists():
            revoked = path.parent / "revoked"
            revoked.mkdir(exist_ok=True, mode=0o700)
            path.rename(revoked / path.name)
