"""The README documents every setting of every program (design principle 8)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from hsm_sim.settings import HsmSimSettings
from issuer_sim.settings import IssuerSettings
from posp.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _keys(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


@pytest.mark.parametrize("key", sorted(_keys(Settings)))
def test_every_switch_setting_has_a_readme_line(key: str) -> None:
    """Each switch setting key appears in README's configuration table."""
    assert f"`{key}`" in README, key


@pytest.mark.parametrize(
    "key", sorted({*_keys(HsmSimSettings, "hsm:"), *_keys(IssuerSettings, "issuer:")})
)
def test_every_simulator_setting_has_a_readme_mention(key: str) -> None:
    """Each HSM / issuer simulator setting is named in the README."""
    assert f"`{key.split(':', 1)[1]}`" in README, key
