"""Numbered schema migrations, shipped as package data.

``<dialect>/NNNN_name.sql`` files are applied in version order by the store's
``open()`` and recorded in ``schema_migrations``; a version already recorded is
never applied again, so ``open()`` is idempotent.  Files hold plain DDL
statements separated by ``;`` at the end of a line, with no ``;`` inside
comments or literals (that is what lets SQLite run them statement by statement
inside one transaction).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file's statements, comments stripped, without the trailing ``;``."""
        lines = [line.split("--", 1)[0] for line in self.sql.splitlines()]
        text = "\n".join(lines)
        return [part.strip() for part in re.split(r";\s*\n", text + "\n") if part.strip()]


def load_migrations(dialect: str) -> list[Migration]:
    """All migrations for ``dialect`` ("sqlite" or "postgres"), oldest first."""
    folder = resources.files(__name__).joinpath(dialect)
    found: list[Migration] = []
    for item in folder.iterdir():
        match = _FILE_NAME.match(item.name)
        if match is None:
            continue
        found.append(Migration(int(match.group(1)), match.group(2), item.read_text("utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration version in {dialect}: {versions}")
    return found
