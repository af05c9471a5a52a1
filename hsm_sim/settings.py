"""Settings of the HSM simulator: defaults < TOML file (``--config``) < env < CLI.

Environment variables use the prefix ``POSP_HSM_`` (``POSP_HSM_PORT=1600``).
The TOML file holds the same keys at top level (``port = 1600``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from posp.errors import ConfigError


class HsmSimSettings(BaseSettings):
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
    log_format: Literal["json", "console"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def load_settings(config_file: Path | None = None, **overrides: Any) -> HsmSimSettings:
    """Read settings from the TOML file, the environment and ``overrides`` (CLI flags).

    Raises ConfigError naming the offending keys when they do not validate.
    """
    toml_path = config_file

    class _FromFile(HsmSimSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
            if toml_path is not None:
                sources += (TomlConfigSettingsSource(settings_cls, toml_file=toml_path),)
            return sources

    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    try:
        loaded = _FromFile(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in exc.errors())
        raise ConfigError(f"invalid HSM simulator settings: {fields}") from None
    return HsmSimSettings.model_validate(loaded.model_dump())
