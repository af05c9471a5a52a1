"""The compiled build (``make compiled``, ``compiled-modules.txt``, ``setup.py``):
its module list, and which build the suite runs on.

``make test`` runs on pure Python and ``make test-compiled`` on the mypyc build
(``POSP_EXPECT_COMPILED=1``); these tests fail when a run is not on the build it
claims — an extension missing from the compiled copy, or one left in the source
tree that would make ``make test`` run compiled code — and check that the
programs the suite starts as processes load the same build."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.build_compiled import (
    PACKAGES,
    compiled_modules,
    copy_tree,
    extension_of,
    runs_compiled,
)

ROOT = Path(__file__).resolve().parent.parent
EXPECT_COMPILED = os.environ.get("POSP_EXPECT_COMPILED") == "1"
MODULES = compiled_modules(ROOT / "compiled-modules.txt")


def _dotted(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def test_the_list_names_existing_modules_of_the_packages() -> None:
    assert MODULES, "compiled-modules.txt lists no module"
    for path in MODULES:
        assert (ROOT / path).is_file(), f"compiled-modules.txt names a missing file: {path}"
        assert path.split("/")[0] in PACKAGES


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "posp/iso8583/message.py\nposp/iso8583/message.py\n",
            "line 2: 'posp/iso8583/message.py' is listed twice",
        ),
        ("# comment\n\nposp/../x.py\n", "line 3"),
        ("requests/api.py\n", "line 1"),
        ("posp/iso8583/message.pyc\n", "line 1"),
    ],
)
def test_a_bad_line_is_refused_by_its_number(tmp_path: Path, text: str, message: str) -> None:
    listing = tmp_path / "compiled-modules.txt"
    listing.write_text(text)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        compiled_modules(listing)


def test_comments_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    listing = tmp_path / "compiled-modules.txt"
    listing.write_text("# header\n\n  posp/framing.py   # the framer\nhsm_sim/engine.py\n")
    assert compiled_modules(listing) == ["posp/framing.py", "hsm_sim/engine.py"]


@pytest.mark.parametrize("path", MODULES)
def test_each_listed_module_runs_as_the_build_says(path: str) -> None:
    module = importlib.import_module(_dotted(path))
    origin = module.__file__
    if EXPECT_COMPILED:
        assert runs_compiled(module), f"{path} is not compiled in this build: {origin}"
    else:
        assert not runs_compiled(module), f"{path} runs compiled in a pure-Python run: {origin}"
        assert str(origin).endswith(".py")
        assert extension_of(ROOT / path) is None, f"an extension shadows {path} in the tree"


def test_programs_started_by_the_suite_load_the_same_build() -> None:
    name = _dotted(MODULES[0])
    here = importlib.import_module(name).__file__
    there = subprocess.run(
        [sys.executable, "-c", f"import {name} as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout.strip()
    assert there == here


@pytest.mark.parametrize("where", [".", "build", "..", "data"])
def test_the_copy_is_made_only_under_build(where: str) -> None:
    """Its contents are replaced: the checkout, its data or a parent never are."""
    with pytest.raises(SystemExit, match="must be a directory under"):
        copy_tree((ROOT / where).resolve())
