"""Settings of the HSM simulator: defaults < TOML file (``--config``) < env < CLI.

Environment variables use the prefix ``POSP_HSM_`` (``POSP_HSM_PORT=1600``).
The TOML file holds the same keys at top level (``port = 1600``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from posp.config import LayeredSettings, load_layered


class HsmSimSettings(LayeredSettings):
    """Every option of ``hsm-sim``; the defaults work out of the box."""

    model_config = SettingsConfigDict(env_prefix="POSP_HSM_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(1500, ge=0, le=65535, description="TCP port; 0 picks a free one")
    header_length: int = Field(4, ge=0, le=32, description="message header length, characters")
    lmk_file: Path | None = Field(None, description="LMK set file; none = public TEST LMKs")
    latency_ms: float = Field(0.0, ge=0, description="artificial latency added to every reply")
    max_cps: float = Field(0.0, ge=0, description="commands per second cap; 0 = unlimited")
    max_backlog: int = Field(
        256, ge=1, description="delayed replies held per connection before reading pauses"
    )
    max_frame_bytes: int = Field(32768, ge=16, le=65535, description="larger frames close")
    metrics_port: int = Field(9102, ge=0, le=65535, description="Prometheus HTTP port; 0 = off")
    tls_cert_file: Path | None = Field(None, description="TLS certificate (PEM); none = TCP")
    tls_key_file: Path | None = Field(None, description="TLS private key (PEM)")
    tls_client_ca_file: Path | None = Field(
        None, description="CA of client certificates; set = clients must present one"
    )
    log_format: Literal["json", "console"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def load_settings(config_file: Path | None = None, **overrides: Any) -> HsmSimSettings:
    """Read settings from the TOML file, the environment and ``overrides`` (CLI flags).

    Raises ConfigError naming the offending keys when they do not validate.
    """
    return load_layered(HsmSimSettings, config_file, overrides, what="HSM simulator")
