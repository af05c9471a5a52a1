"""One layered settings loader for every program (switch, HSM simulator, issuer
simulator): defaults < TOML file < environment < overrides (command-line flags).

A program's settings class derives from :class:`LayeredSettings` (which gives it
the three sources, highest first: keyword arguments, environment variables with
the class's ``env_prefix``, the TOML file of the load in progress) and is built
with :func:`load_layered`.

Invariants:
* A setting that does not validate raises :class:`posp.errors.ConfigError` whose
  message names every bad key and its environment variable
  (``setting limits.max_connections (POSP_LIMITS__MAX_CONNECTIONS): …``), never
  the rejected value (it may be a key).
* A named TOML file that does not exist, or does not parse, is a ConfigError.
* Overrides whose value is None are "not given" (an unset flag) and do not apply.
* The TOML file is held in a context variable for the duration of one load, so
  concurrent loads (tests) never see each other's file.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    TomlConfigSettingsSource,
)

from posp.errors import ConfigError

_toml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "posp_config_toml", default=None
)


class LayeredSettings(BaseSettings):
    """Base of the programs' settings classes: keyword arguments, then the
    environment, then the TOML file of the :func:`load_layered` in progress."""

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
        path = _toml_path.get()
        if path is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=path),)
        return sources


SettingsT = TypeVar("SettingsT", bound=LayeredSettings)


def load_layered(
    settings_cls: type[SettingsT],
    config_file: str | Path | None,
    overrides: Mapping[str, Any],
    *,
    what: str = "switch",
) -> SettingsT:
    """``settings_cls`` from its defaults, ``config_file`` (TOML), the environment and
    ``overrides``; ConfigError (see the module invariants) when they do not validate.
    ``what`` names the program in error messages (``invalid switch settings: …``)."""
    path = Path(config_file) if config_file else None
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    token = _toml_path.set(path)
    try:
        return settings_cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(f"invalid {what} settings: {describe(exc, settings_cls)}") from None
    except ValueError as exc:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(f"config file {path}: {exc}") from None
    finally:
        _toml_path.reset(token)


def describe(error: ValidationError, settings_cls: type[BaseSettings]) -> str:
    """One clause per bad key, naming the TOML key and its environment variable."""
    prefix = str(settings_cls.model_config.get("env_prefix") or "")
    nested = str(settings_cls.model_config.get("env_nested_delimiter") or "__")
    clauses = []
    for item in error.errors():
        parts = [str(p) for p in item["loc"]]
        if not parts:
            clauses.append(f"settings: {item['msg']}")
            continue
        env = prefix + nested.join(parts).upper()
        clauses.append(f"setting {'.'.join(parts)} ({env}): {item['msg']}")
    return "; ".join(clauses)
