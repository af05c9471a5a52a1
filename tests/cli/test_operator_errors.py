"""Operator mistakes get a message naming the problem (exit 2, no traceback), and
every program answers --version (issue 14, items 5, 6 and 8)."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from posp.cli import main

from .conftest import MERCHANT, Posp

BIN = Path(sys.executable).parent
PROGRAMS = ("posp", "hsm-sim", "issuer-sim", "posp-fleet", "posp-conformance", "posp-healthcheck")


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    program, *rest = argv
    return subprocess.run(
        [str(BIN / program), *rest], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def assert_usage_error(done: subprocess.CompletedProcess[str], *names: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for name in names:
        assert name in done.stderr, done.stderr


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_program_prints_its_version(program: str) -> None:
    """--version: '<prog> <version> (Python x.y.z)', exit 0."""
    done = run(program, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{program} ") and "Python" in done.stdout


def test_hsm_sim_missing_and_malformed_lmk_file_are_named(tmp_path: Path) -> None:
    """--lmk-file that does not exist, or a bad line: the path (and line) named."""
    missing = tmp_path / "no-lmk.txt"
    base = ("hsm-sim", "--port", "0", "--metrics-port", "0", "--lmk-file")
    assert_usage_error(run(*base, str(missing)), str(missing), "does not exist")
    bad = tmp_path / "lmk.txt"
    bad.write_text("00-01 nothex\n")
    assert_usage_error(run(*base, str(bad)), str(bad), "line 1")


def test_busy_metrics_port_is_named_by_the_simulators() -> None:
    """hsm-sim and issuer-sim on a taken metrics port: the port named, exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert_usage_error(run("hsm-sim", "--port", "0", "--metrics-port", port), port)
        issuer = run("issuer-sim", "serve", "--port", "0", "--metrics-port", port)
        assert_usage_error(issuer, f"metrics port 127.0.0.1:{port}")


def test_issuer_sim_names_missing_card_files_and_unusable_databases(tmp_path: Path) -> None:
    """serve --cards missing, serve --db unopenable, cards import of a missing file, and
    cards list of a missing db (which must not be created)."""
    nope = tmp_path / "nope.csv"
    assert_usage_error(run("issuer-sim", "serve", "--port", "0", "--cards", str(nope)), "--cards")
    unopenable = tmp_path / "no-such-dir" / "x.db"
    serve = run("issuer-sim", "serve", "--port", "0", "--db", str(unopenable))
    assert_usage_error(serve, str(unopenable), "--db")
    imported = run("issuer-sim", "cards", "import", "--db", str(tmp_path / "x.db"), str(nope))
    assert_usage_error(imported, str(nope), "does not exist")
    missing_db = tmp_path / "missing.db"
    assert_usage_error(run("issuer-sim", "cards", "list", "--db", str(missing_db)), "--db")
    assert not missing_db.exists()


def _posp(*argv: str) -> tuple[int, str]:
    """posp.cli.main without the fixture's --data-dir; (exit code, stdout)."""
    buffer = io.StringIO()
    code = main(list(argv), out=Console(file=buffer, width=240, color_system=None))
    return code, buffer.getvalue()


def test_read_only_commands_do_not_create_a_typod_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """merchant/terminal/batch list with a data dir that does not exist: exit 2 saying
    so, and the directory is still not there."""
    typo = tmp_path / "dta"
    for command in (["merchant", "list"], ["terminal", "list"], ["batch", "list"]):
        code, _ = _posp(*command, "--data-dir", str(typo))
        assert code == 2
        err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
        assert f"data directory {typo} does not exist" in err
    assert not typo.exists()


def test_global_options_work_before_the_command(
    posp: Posp, merchant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`posp --data-dir D --json merchant list` equals `posp merchant list --data-dir D
    --json` (argparse parents on the top-level parser too)."""
    before = _posp("--data-dir", str(posp.data_dir), "--json", "merchant", "list")
    assert before[0] == 0 and MERCHANT in before[1] and before[1].lstrip().startswith("[")
    after = _posp("merchant", "list", "--data-dir", str(posp.data_dir), "--json")
    assert after == before


@pytest.mark.parametrize("command", ["serve", "up"])
def test_json_is_refused_by_serve_and_up(
    posp: Posp, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json is not silently ignored by commands that print logs: exit 2 naming it."""
    result = posp(command, "--json")
    assert result.code == 2 and "--json" in result.err and "log.format" in result.err


def test_store_errors_name_the_server_without_credentials(
    posp: Posp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL unreachable: host:port/db named, user and password never printed."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("POSP_STORE_URL", f"postgresql://admin:s3cret@127.0.0.1:{port}/posp")
    result = posp("merchant", "list")
    assert result.code == 1
    assert f"127.0.0.1:{port}/posp" in result.err
    assert "s3cret" not in result.err and "admin" not in result.err
