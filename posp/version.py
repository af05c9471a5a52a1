"""The installed version, as every program's ``--version`` and ``posp_build_info``
report it.

Invariant: the version comes from the installed distribution's metadata (the one
``pyproject.toml`` sets), never from a second hand-kept copy; a bare source tree that
was never installed reports ``unknown``.
"""

from __future__ import annotations

import argparse
import platform
from importlib.metadata import PackageNotFoundError, version


def posp_version() -> str:
    try:
        return version("posp")
    except PackageNotFoundError:
        return "unknown"


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    """``--version``: print ``<prog> <version> (Python x.y.z)`` and exit 0."""
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {posp_version()} (Python {platform.python_version()})",
    )
