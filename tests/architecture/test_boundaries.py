"""The import contracts of pyproject.toml hold, and cover every module of the switch."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = "posp.lab"


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _switch_modules() -> set[str]:
    """Every top-level module and package of posp except the lab."""
    found = {f"posp.{p.stem}" for p in (ROOT / "posp").glob("*.py") if p.stem != "__init__"}
    found |= {f"posp.{p.parent.name}" for p in (ROOT / "posp").glob("*/__init__.py")}
    return found - {LAB}


def test_lint_imports_keeps_every_contract() -> None:
    """`lint-imports` (also in `make lint`) passes: boundaries hold in the default suite too."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_no_simulator_contracts_name_every_switch_module() -> None:
    """A new module of posp is under the contracts from day one (or the lab's)."""
    switch_contracts = [
        c
        for c in _contracts()
        if c["type"] == "forbidden" and "posp.switch" in list(c["source_modules"])  # type: ignore[call-overload]
    ]
    assert len(switch_contracts) == 2
    for contract in switch_contracts:
        assert set(contract["source_modules"]) == _switch_modules(), contract["name"]  # type: ignore[call-overload]
