"""The compiled build: a copy of the tree in which the modules named by
``compiled-modules.txt`` are compiled by mypyc (``make compiled``; ``make
test-compiled`` runs the whole default suite on it, as CI does after ``make test``).

Invariants:
* The source tree is never compiled in place: ``make test`` always tests pure
  Python, and no stale extension module can shadow an edited ``.py``.
* The copy holds the checkout's files as git lists them (tracked and untracked,
  less what .gitignore leaves out: the environment, caches, data, builds);
  mypyc's own incremental state in it (``build/``, ``.mypy_cache``) is kept
  between builds, everything else is copied afresh, so a module dropped from the
  list is pure Python again in the next build.  The copy lies under ``build/``.
* A build that did not produce an extension for every listed module fails.
* ``setup.py`` reads the same list (``compiled_modules``) for the Docker image.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
MODULE_LIST = REPO / "compiled-modules.txt"
#: Top-level packages whose modules may be compiled.
PACKAGES = ("posp", "hsm_sim", "issuer_sim", "terminals")
#: mypyc's incremental state inside the copy, kept from one build to the next.
_KEEP = frozenset({"build", ".mypy_cache"})
#: Where compiled copies may be made (their contents are replaced).
BUILD_ROOT = REPO / "build"


def compiled_modules(path: Path = MODULE_LIST) -> list[str]:
    """The module paths listed in ``path`` (one per line; blank lines and ``#``
    comments skipped).  ValueError naming the line for a path that is not a
    ``.py`` file of one of :data:`PACKAGES`, or that is listed twice."""
    modules: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = Path(line).parts
        if not line.endswith(".py") or len(parts) < 2 or parts[0] not in PACKAGES or ".." in parts:
            raise ValueError(f"{path.name} line {number}: {line!r} is not a module of {PACKAGES}")
        if line in modules:
            raise ValueError(f"{path.name} line {number}: {line!r} is listed twice")
        modules.append(line)
    return modules


def extension_of(module: Path) -> Path | None:
    """The compiled extension next to ``module`` (``x.py`` → ``x.cpython-….so``), if any."""
    for suffix in EXTENSION_SUFFIXES:
        candidate = module.with_name(module.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def runs_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension, not its ``.py``."""
    return str(module.__file__).endswith(tuple(EXTENSION_SUFFIXES))


def copy_tree(target: Path) -> None:
    """``target`` made a fresh copy of the checkout's files (``git ls-files``:
    tracked and untracked, without what .gitignore leaves out), mypyc's state in
    it kept.  ``target`` must lie under ``build/``: its contents are replaced."""
    if not target.is_relative_to(BUILD_ROOT) or target == BUILD_ROOT:
        raise SystemExit(f"the compiled copy must be a directory under {BUILD_ROOT}, not {target}")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = [REPO / name.decode() for name in listed if name]
    target.mkdir(parents=True, exist_ok=True)
    for child in target.iterdir():
        if child.name in _KEEP:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    for source in files:
        if not source.exists():  # deleted in the work tree, not yet in the index
            continue
        copy = target / source.relative_to(REPO)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, copy, follow_symlinks=False)


def build(target: Path) -> list[str]:
    """Copy the tree to ``target`` and compile the listed modules there; the log of
    mypyc and the C compiler goes to ``target/compile.log``."""
    modules = compiled_modules()
    copy_tree(target)
    log = target / "compile.log"
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            [sys.executable, "-m", "mypyc", *modules],
            cwd=target,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-20:]
        raise SystemExit(f"mypyc failed ({done.returncode}); the end of {log}:\n" + "\n".join(tail))
    missing = [m for m in modules if extension_of(target / m) is None]
    if missing:
        raise SystemExit(f"mypyc built no extension for: {', '.join(missing)} (see {log})")
    return modules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="directory of the compiled copy")
    args = parser.parse_args(argv)
    modules = build(args.target.resolve())
    print(f"compiled build in {args.target}: {len(modules)} modules compiled by mypyc")
    return 0


if __name__ == "__main__":
    sys.exit(main())
