"""The switch's settings: defaults that work out of the box, a TOML file, and
``POSP_…`` environment variables, validated once at start.

Precedence (highest first): keyword arguments to :func:`load_settings`,
environment (``POSP_`` prefix, ``__`` between nested keys, e.g.
``POSP_LIMITS__MAX_CONNECTIONS=5000``), the TOML file named by ``--config`` or
``POSP_CONFIG``, then the defaults below.

Invariants:
* A setting that does not validate raises :class:`posp.errors.ConfigError`
  whose message names the key (``limits.max_connections``) and its variable.
* ``store_url`` defaults to the SQLite file inside ``data_dir``.
* The default ``pan_hash_key`` is a public test value; ``uses_test_pan_hash_key``
  tells the switch to warn at start.

Configuration keys (TOML section / env variable):

====================================  =======================================
key                                   meaning (default)
====================================  =======================================
listen_host                           terminal listener address (127.0.0.1)
terminal_port                         terminal listener port (5800; 0 = any)
reuse_port                            SO_REUSEPORT on the terminal listener (false; Linux):
                                      several switch processes accept on one port
metrics_host / metrics_port           Prometheus exposition (127.0.0.1:9100)
data_dir                              data directory (./data)
store_url                             sqlite:///<data_dir>/posp.db or postgresql://…
hsm_url                               inprocess:// or tcp://host:port
hsm_timeout_s                         deadline of one HSM call (2.0)
node_id                               0-99, unique per switch instance (1)
network_enabled                       connect to the card network (true); false answers 91
working_key_lifetime_s                sign-in keys valid this long (86400)
pan_hash_key                          key of the PAN hash in the journal
registry_max_age_s                    how old a cached terminal or merchant row may be on card
                                      transactions (1.0; 0 = read every time)
network.*                             card network link (posp.network.settings; F32 acquirer_id)
limits.*                              connections, frames, idle, in-flight, deadlines
settlement.*                          mac_on_settlement, domestic card rules
tls.*                                 terminal listener TLS: cert_file, key_file, client_ca_file
hsm_tls.*                             HSM link TLS: ca_file, cert_file, key_file, server_name
recovery.*                            in-doubt sweeper: sweep_interval_s (5), in_doubt_grace_s (30),
                                      deferred_retry_s (2)
tms.*                                 terminal management (posp.tms.settings; README)
log.format / log.level                console | json; debug | info | warning | error
risk.*                                risk rules: ruleset_path, dormancy, ... (posp.risk)
====================================  =======================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from posp.config import LayeredSettings, load_layered
from posp.network.settings import NetworkLinkSettings
from posp.risk.settings import RiskSettings
from posp.tls import ClientTls, ListenerTls
from posp.tms.settings import TmsSettings

ENV_PREFIX = "POSP_"
CONFIG_ENV = "POSP_CONFIG"
#: Public test value: fine for a lab, never for production (the switch warns).
TEST_PAN_HASH_KEY = "TEST-ONLY-PAN-HASH-KEY-CHANGE-ME"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitSettings(_Section):
    """Load limits: beyond them the switch sheds with an answer, never a queue."""

    max_connections: int = Field(default=20000, ge=1)
    max_frame_bytes: int = Field(default=4096, ge=64, le=65535)
    idle_timeout_s: float = Field(default=300.0, gt=0)
    max_in_flight_per_connection: int = Field(default=32, ge=1)
    max_in_flight: int = Field(default=5000, ge=1)
    request_deadline_s: float = Field(default=10.0, gt=0)
    #: Largest single transfer (fen) for terminals without a cap of their own.
    transfer_cap_minor: int = Field(default=5_000_000, ge=0)
    shutdown_drain_s: float = Field(default=10.0, ge=0)


class SettlementSettings(_Section):
    """Settlement: MAC policy and how cards are classed domestic / foreign."""

    mac_on_settlement: bool = False
    domestic_card_orgs: tuple[str, ...] = ("CUP",)
    domestic_bin_prefixes: tuple[str, ...] = ("62",)


class RecoverySettings(_Section):
    """Resolving what a dead switch left in doubt (``posp.pipeline.recovery``)."""

    #: How often the sweeper looks for in-doubt entries and kept 0400s.
    sweep_interval_s: float = Field(default=5.0, gt=0)
    #: An entry still pending this long after its request's deadline (plus the
    #: answer grace) is orphaned: reversed upstream.  Covers clock skew between
    #: instances on one database.
    in_doubt_grace_s: float = Field(default=30.0, ge=0)
    #: First retry delay of a kept 0400 whose MAC the HSM could not check (doubles,
    #: capped at 60 s).
    deferred_retry_s: float = Field(default=2.0, gt=0)


class LogSettings(_Section):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(LayeredSettings):
    """Every setting of the switch (see the module docstring for the table)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    listen_host: str = "127.0.0.1"
    terminal_port: int = Field(default=5800, ge=0, le=65535)
    reuse_port: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    metrics_enabled: bool = True
    data_dir: Path = Path("./data")
    store_url: str = ""
    hsm_url: str = "inprocess://"
    hsm_timeout_s: float = Field(default=2.0, gt=0)
    node_id: int = Field(default=1, ge=0, le=99)
    network_enabled: bool = True
    working_key_lifetime_s: float = Field(default=86400.0, gt=0)
    pan_hash_key: str = Field(default=TEST_PAN_HASH_KEY, min_length=16)
    signed_in_refresh_s: float = Field(default=15.0, gt=0)
    #: How old a cached terminal or merchant row may be on card transactions
    #: (``posp.pipeline.checks``); changes made through the same switch apply at once.
    registry_max_age_s: float = Field(default=1.0, ge=0)
    network: NetworkLinkSettings = NetworkLinkSettings()
    limits: LimitSettings = LimitSettings()
    settlement: SettlementSettings = SettlementSettings()
    recovery: RecoverySettings = RecoverySettings()
    #: TLS on the terminal listener (unset cert_file: plain TCP).
    tls: ListenerTls = ListenerTls()
    #: TLS to the HSM's host port (unset ca_file: plain TCP).
    hsm_tls: ClientTls = ClientTls()
    log: LogSettings = LogSettings()
    tms: TmsSettings = TmsSettings()
    risk: RiskSettings = RiskSettings()

    @model_validator(mode="after")
    def _derive_and_check(self) -> Settings:
        if not self.store_url:
            # frozen model: set through the object's dict once, at validation
            object.__setattr__(self, "store_url", f"sqlite:///{self.data_dir / 'posp.db'}")
        if not self.store_url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("store_url must start with sqlite:// or postgresql://")
        if not self.hsm_url.startswith(("inprocess://", "tcp://")):
            raise ValueError("hsm_url must be inprocess:// or tcp://host:port")
        return self

    @property
    def uses_test_pan_hash_key(self) -> bool:
        return self.pan_hash_key == TEST_PAN_HASH_KEY


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build and validate the settings (:func:`posp.config.load_layered`); ConfigError
    names every bad key and its variable.

    ``config`` (or ``POSP_CONFIG``) names a TOML file; a missing file is an error."""
    raw = config if config is not None else os.environ.get(CONFIG_ENV)
    return load_layered(Settings, raw or None, overrides, what="switch")
