"""posp.config.load_layered: the one loader behind the switch's, the HSM simulator's
and the issuer simulator's settings (defaults < TOML < environment < overrides)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from hsm_sim.settings import load_settings as hsm_settings
from issuer_sim.settings import load_settings as issuer_settings
from posp.config import LayeredSettings, load_layered
from posp.errors import ConfigError
from posp.settings import load_settings as switch_settings

Loader = Callable[..., Any]


class Example(LayeredSettings):
    model_config = SettingsConfigDict(env_prefix="POSP_EXAMPLE_", extra="forbid")

    a: int = 1
    b: int = 1
    c: int = 1
    d: int = Field(1, ge=0)


def test_layers_apply_in_order_defaults_toml_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "example.toml"
    config.write_text("b = 2\nc = 2\nd = 2\n")
    monkeypatch.setenv("POSP_EXAMPLE_C", "3")
    monkeypatch.setenv("POSP_EXAMPLE_D", "3")
    loaded = load_layered(Example, config, {"d": 4, "a": None}, what="example")
    assert (loaded.a, loaded.b, loaded.c, loaded.d) == (1, 2, 3, 4)
    assert load_layered(Example, None, {}).b == 1  # the file applied to its own load only


def test_bad_value_names_the_key_and_its_environment_variable(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"invalid example settings: setting d \(POSP_EXAMPLE_D\)"
    ):
        load_layered(Example, None, {"d": -1}, what="example")
    config = tmp_path / "bad.toml"
    config.write_text("nope = 1\n")
    with pytest.raises(ConfigError, match=r"setting nope \(POSP_EXAMPLE_NOPE\)"):
        load_layered(Example, config, {}, what="example")


@pytest.mark.parametrize(
    ("load", "key", "value", "variable"),
    [
        (switch_settings, "node_id", 100, "POSP_NODE_ID"),
        (hsm_settings, "port", 70000, "POSP_HSM_PORT"),
        (issuer_settings, "drop_rate", 3, "POSP_ISSUER_DROP_RATE"),
    ],
)
def test_each_program_names_key_and_variable(
    load: Loader, key: str, value: int, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POSP_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=rf"setting {key} \({variable}\)"):
        load(None, **{key: value})


@pytest.mark.parametrize("load", [switch_settings, hsm_settings, issuer_settings])
def test_unparsable_or_missing_toml_is_a_config_error_naming_the_file(
    load: Loader, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.toml")
