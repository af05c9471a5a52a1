"""setuptools hook of the compiled build.  With ``POSP_COMPILE=1`` (the Docker
image) the modules listed in ``compiled-modules.txt`` are compiled by mypyc,
which must then be installed and the build run without isolation
(``pip install --no-build-isolation``); otherwise the install is pure Python,
as ``make install`` makes it.  Metadata lives in pyproject.toml."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup

COMPILE = os.environ.get("POSP_COMPILE") == "1"


def _ext_modules() -> list[Any]:
    if not COMPILE:
        return []
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mypyc.build import mypycify

    from tools.build_compiled import compiled_modules

    return list(mypycify(compiled_modules(), opt_level="3"))


# A compiled build keeps its objects out of the pure build's directory, so that a
# later pure install can never pick up an extension module from it.
setup(
    ext_modules=_ext_modules(),
    options={"build": {"build_base": "build/setuptools-compiled"}} if COMPILE else {},
)
