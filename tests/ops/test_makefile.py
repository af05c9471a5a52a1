"""The Makefile's setup traps: a half-made .venv is made again, ``make clean`` keeps
data/ (the journal).  Run against a fake Python so no package is installed."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"

# A stand-in for python3: `-m venv DIR` makes DIR/bin/python, a script that logs its
# arguments and succeeds (pip install, pip --version).
FAKE_PY = """#!/bin/sh
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  printf '#!/bin/sh\\necho "$@" >> "%s/calls.log"\\n' "$3" > "$3/bin/python"
  chmod +x "$3/bin/python"
  echo "venv $3" >> "$3/calls.log"
fi
"""


def _make(work: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    fake = work / "fakepy"
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    return subprocess.run(
        ["make", "-f", str(MAKEFILE), *targets, f"PY={fake}", f"VENV={work / 'venv'}"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _workspace(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "requirements.lock"):
        (tmp_path / name).write_text("")
    return tmp_path


def test_a_half_made_venv_is_made_again(tmp_path: Path) -> None:
    """A stamp over a venv whose python is gone (a dangling link): `make install`
    recreates the venv and installs with the lock file, instead of trusting the stamp."""
    work = _workspace(tmp_path)
    venv = work / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(work / "no-such-python")
    (venv / ".installed").write_text("")
    done = _make(work, "install")
    assert done.returncode == 0, done.stdout + done.stderr
    calls = (venv / "calls.log").read_text()
    assert f"venv {venv}" in calls
    assert "-c requirements.lock -e .[test]" in calls
    assert (venv / ".installed").exists()


def test_make_clean_keeps_the_data_directory(tmp_path: Path) -> None:
    """`make clean` removes the venv and caches, never data/ (the journal)."""
    work = _workspace(tmp_path)
    (work / "data").mkdir()
    (work / "data" / "posp.db").write_text("journal")
    (work / "venv").mkdir()
    done = _make(work, "clean")
    assert done.returncode == 0, done.stderr
    assert (work / "data" / "posp.db").read_text() == "journal"
    assert not (work / "venv").exists()


def test_postgresql_tests_say_which_server_they_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pytest report header names the PostgreSQL server (host:port/db, where the DSN
    came from, version or unreachable), never its password."""
    from tests.conftest import pg_server_description

    monkeypatch.setenv("POSP_TEST_PG_DSN", "x")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    line = pg_server_description(f"postgresql://u:s3cret@127.0.0.1:{port}/db")
    assert f"127.0.0.1:{port}/db (POSP_TEST_PG_DSN)" in line and "unreachable" in line
    assert "s3cret" not in line
