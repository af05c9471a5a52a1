"""Shared test fixtures: the spec vectors and PostgreSQL availability."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SPEC_DIR = Path(os.environ.get("POSP_SPEC_DIR", REPO.parent / "shared" / "spec"))
# A copy of the vectors travels with the repo so tests run without ../shared.
VECTORS_FILE = REPO / "tests" / "vectors.json"

PG_DSN = os.environ.get("POSP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """Known-answer vectors from spec/vectors.json."""
    path = SPEC_DIR / "vectors.json"
    if not path.exists():
        path = VECTORS_FILE
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _pg_reachable(dsn: str) -> bool:
    import asyncio

    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
        except Exception:
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def pg_server_description(dsn: str) -> str:
    """Which PostgreSQL the tests use: version, host:port/db (never the password), and
    whether the DSN came from POSP_TEST_PG_DSN or is the default."""
    import asyncio
    from urllib.parse import urlsplit

    import asyncpg

    parts = urlsplit(dsn)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
    source = "POSP_TEST_PG_DSN" if "POSP_TEST_PG_DSN" in os.environ else "default DSN"

    async def version() -> str:
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
        except Exception as exc:
            return f"unreachable ({type(exc).__name__}): PostgreSQL tests will be skipped"
        try:
            return f"PostgreSQL {await conn.fetchval('SHOW server_version')}"
        finally:
            await conn.close()

    return f"PostgreSQL tests use {where} ({source}): {asyncio.run(version())}"


def pytest_report_header(config: pytest.Config) -> str:
    return pg_server_description(PG_DSN)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of the test PostgreSQL; skips the test with a message when absent."""
    if not _pg_reachable(PG_DSN):
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN} (set POSP_TEST_PG_DSN)")
    return PG_DSN


def drop_pg_schema(dsn: str, schema: str) -> None:
    """Drop a test's PostgreSQL schema and everything in it (from outside a loop)."""
    import asyncio

    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())
