"""Settings of the card network / issuer simulator: defaults < TOML (``--config``) <
environment (``POSP_ISSUER_…``) < command-line flags.

The defaults pair with the switch's defaults out of the box: same port, same TEST zone
keys (:mod:`posp.lab.zone_keys`), in-process HSM with the TEST LMK set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from issuer_sim.cardfile import DEMO_CARDS
from posp.config import LayeredSettings, load_layered
from posp.lab import zone_keys
from terminals.chip import DEMO_CHIP_CARDS


class IssuerSettings(LayeredSettings):
    """Every option of ``issuer-sim serve``."""

    model_config = SettingsConfigDict(env_prefix="POSP_ISSUER_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(9583, ge=0, le=65535, description="network link port; 0 = any free")
    cards: Path | None = Field(DEMO_CARDS, description="card file loaded when the db is empty")
    chip_cards: Path | None = Field(
        DEMO_CHIP_CARDS, description="lab chip card file: these PANs are chip cards (IMK-AC)"
    )
    chip_script_pans: list[str] = Field(
        default_factory=list, description="chip cards answered with an issuer script (72)"
    )
    db: str = Field("", description="SQLite file for accounts; empty = in memory only")
    flush_interval_s: float = Field(1.0, gt=0, description="write-behind period")
    durable: bool = Field(False, description="commit every ledger change before its answer")
    hsm: str = Field("inprocess://", description="inprocess:// or tcp://host:port")
    latency_ms: float = Field(0.0, ge=0, description="delay before every financial answer")
    drop_rate: float = Field(0.0, ge=0, le=1, description="share of answers silently dropped")
    key_exchange_interval_s: float = Field(0.0, ge=0, description="0 = never initiate")
    key_grace_s: float = Field(60.0, ge=0, description="old zone keys stay valid")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus port; 0 = off")
    control_port: int = Field(0, ge=0, le=65535, description="HTTP JSON control; 0 = off")
    network_id: str = Field("00010000", max_length=11, description="this network's id")
    issuer_id: str = Field("00010344", max_length=11, description="issuer id in F44")
    zmk_lmk: str = zone_keys.TEST_ZMK_LMK
    zpk_lmk: str = zone_keys.TEST_ZPK_LMK
    zak_lmk: str = zone_keys.TEST_ZAK_LMK
    pvk_lmk: str = zone_keys.TEST_PVK_LMK
    tz_offset_hours: float = Field(8.0, ge=-14, le=14)
    max_frame_bytes: int = Field(8192, ge=256)
    log_format: Literal["json", "console"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def load_settings(config_file: Path | None = None, **overrides: Any) -> IssuerSettings:
    """Settings from the TOML file, the environment and ``overrides`` (CLI flags that are
    not None).  ConfigError naming the offending keys when they do not validate."""
    return load_layered(IssuerSettings, config_file, overrides, what="issuer simulator")
