"""Run ``posp.cli.main`` in-process against a temporary data directory (SQLite
store, in-process HSM with the test LMK) and capture what it prints."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from rich.console import Console

from posp.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Posp:
    """Calls the CLI with ``--data-dir`` pointing at the test's directory."""

    def __init__(self, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.data_dir = data_dir
        self._capsys = capsys

    def __call__(self, *argv: str) -> Result:
        buffer = io.StringIO()
        console = Console(file=buffer, width=240, color_system=None)
        self._capsys.readouterr()
        code = main([*argv, "--data-dir", str(self.data_dir)], out=console)
        captured = self._capsys.readouterr()
        return Result(code, buffer.getvalue() + captured.out, captured.err)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """main() points structlog at this test's captured stderr; undo that afterwards
    so later tests do not write to a closed capture file."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def posp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Posp:
    monkeypatch.delenv("POSP_CONFIG", raising=False)
    return Posp(tmp_path / "data", capsys)


MERCHANT = "898100000000001"


@pytest.fixture
def merchant(posp: Posp) -> str:
    result = posp("merchant", "add", "--id", MERCHANT, "--name", "Test shop", "--mcc", "5411")
    assert result.code == 0, result.err
    return MERCHANT
