"""Apply the numbered SQL migrations in ``sql/`` exactly once each.

Each file ``NNNN_name.sql`` runs in its own transaction and is recorded with a
SHA-256 of its text; running again applies only new files and refuses to go
on when an applied file was changed (a changed migration is a new migration).
A file whose first line is ``-- cbm:no-transaction`` runs statement by
statement outside a transaction (TimescaleDB's continuous aggregates need it).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cbm import tables
from cbm.errors import MigrationError

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
_NO_TRANSACTION = "-- cbm:no-transaction"
# Any constant will do; it keeps two migrators from interleaving.
_LOCK_KEY = 0x43424D


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """Return the SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = SQL_DIR) -> list[Migration]:
    """Return the migrations of ``directory`` in version order."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


def migrate(conn: psycopg.Connection[tuple[object, ...]], directory: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations on an autocommit connection; return the names applied."""
    if not conn.autocommit:
        raise MigrationError("migrate() needs an autocommit connection")
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {tables.SCHEMA_MIGRATION} (
            version integer PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        applied = {
            int(str(version)): str(checksum)
            for version, checksum in conn.execute(
                f"SELECT version, checksum FROM {tables.SCHEMA_MIGRATION}"
            )
        }
        done: list[str] = []
        for migration in discover(directory):
            known = applied.get(migration.version)
            if known == migration.checksum:
                continue
            if known is not None:
                raise MigrationError(
                    f"{migration.name} changed after it was applied; add a new migration instead"
                )
            _apply(conn, migration)
            done.append(migration.name)
            log.info("applied migration %s", migration.name)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _apply(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    record = f"INSERT INTO {tables.SCHEMA_MIGRATION} (version, name, checksum) VALUES (%s, %s, %s)"
    params = (migration.version, migration.name, migration.checksum)
    try:
        if migration.sql.startswith(_NO_TRANSACTION):
            for statement in _statements(migration.sql):
                conn.execute(statement.encode())
            conn.execute(record, params)
        else:
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(record, params)
    except psycopg.Error as exc:
        raise MigrationError(f"{migration.name} failed: {exc}") from exc


def _statements(sql: str) -> list[str]:
    # Statements of a no-transaction file are separated by a line holding only ";".
    return [part.strip() for part in re.split(r"^;\s*$", sql, flags=re.MULTILINE) if part.strip()]
