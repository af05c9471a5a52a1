"""Settings of terminal management, the ``[tms]`` section of the switch's
settings (environment ``POSP_TMS__…``).

Invariants:
* Relative paths (and the defaults) resolve inside the switch's ``data_dir``.
* The offline-key passphrase is a secret: it comes from the environment
  (``POSP_TMS__OFFLINE_PASSPHRASE``) or the file, and never appears in a repr.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from posp.tms.keys import KeyStore
from posp.tms.rollout import DEFAULT_FAILURE_THRESHOLD_PCT, DEFAULT_WAVES_PCT


class TmsSettings(BaseModel):
    """Terminal management: the TUF repository, its keys, its HTTP endpoint, rollouts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo_dir: Path = Path("tms/repo")
    offline_keys_dir: Path = Path("tms/keys/offline")
    online_keys_dir: Path = Path("tms/keys/online")
    offline_passphrase: SecretStr | None = None
    key_type: Literal["ed25519", "ecdsa-p256"] = "ed25519"
    root_expiry_days: float = Field(default=365.0, gt=0)
    targets_expiry_days: float = Field(default=90.0, gt=0)
    snapshot_expiry_days: float = Field(default=7.0, gt=0)
    timestamp_expiry_days: float = Field(default=1.0, gt=0)
    timestamp_refresh_s: float = Field(default=3600.0, gt=0)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8580, ge=0, le=65535)
    max_package_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    rollout_waves_pct: tuple[float, ...] = DEFAULT_WAVES_PCT
    failure_threshold_pct: float = Field(default=DEFAULT_FAILURE_THRESHOLD_PCT, ge=0, le=100)
    #: How old a terminal's cached management view (versions, caps) may be on card
    #: transactions; changes made through the same switch apply at once.
    view_max_age_s: float = Field(default=1.0, ge=0)

    def path(self, data_dir: Path, value: Path) -> Path:
        return value if value.is_absolute() else data_dir / value

    def key_store(self, data_dir: Path) -> KeyStore:
        secret = self.offline_passphrase
        return KeyStore(
            self.path(data_dir, self.offline_keys_dir),
            self.path(data_dir, self.online_keys_dir),
            secret.get_secret_value().encode() if secret else None,
        )

    def expiry(self) -> dict[str, dt.timedelta]:
        return {
            "root": dt.timedelta(days=self.root_expiry_days),
            "targets": dt.timedelta(days=self.targets_expiry_days),
            "snapshot": dt.timedelta(days=self.snapshot_expiry_days),
            "timestamp": dt.timedelta(days=self.timestamp_expiry_days),
        }
