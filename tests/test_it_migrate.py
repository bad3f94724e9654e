"""Migrations on a real PostgreSQL: once each, checksummed, portable."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from cbm.errors import MigrationError
from cbm.migrate import SQL_DIR, discover, migrate


def schema(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY 1, 2"
    ).fetchall()


def test_running_twice_changes_nothing(db) -> None:
    before = schema(db)
    versions = db.execute("SELECT version, checksum FROM schema_migration ORDER BY 1").fetchall()
    assert [v for v, _ in versions] == [m.version for m in discover()]
    assert migrate(db) == []
    assert schema(db) == before
    assert (
        db.execute("SELECT version, checksum FROM schema_migration ORDER BY 1").fetchall()
        == versions
    )


def test_a_changed_applied_file_is_refused(db, tmp_path: Path) -> None:
    copy = tmp_path / "sql"
    shutil.copytree(SQL_DIR, copy)
    first = sorted(copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(db, copy)


def test_new_files_apply_and_a_failing_one_rolls_back(db, tmp_path: Path) -> None:
    copy = tmp_path / "sql"
    shutil.copytree(SQL_DIR, copy)
    (copy / "9998_extra.sql").write_text("CREATE TABLE extra_thing (id int);")
    (copy / "9999_broken.sql").write_text("CREATE TABLE half (id int);\nSELECT nonsense_fn();")
    with pytest.raises(MigrationError, match=r"9999_broken\.sql failed"):
        migrate(db, copy)
    tables = {
        r[0]
        for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    assert "extra_thing" in tables and "half" not in tables
    assert db.execute("SELECT max(version) FROM schema_migration").fetchone() == (9998,)


def test_hypertables_fall_back_to_brin_indexes_without_timescaledb(db) -> None:
    has_ts = db.execute("SELECT cbm_has_timescaledb()").fetchone()[0]
    if has_ts:
        pytest.skip("TimescaleDB present: hypertables instead of BRIN")
    brin = {
        r[0]
        for r in db.execute("SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%USING brin%'")
    }
    assert {"ingest_window", "temperature", "dead_letter"} <= brin


def test_migrate_needs_autocommit(db_url: str) -> None:
    with psycopg.connect(db_url) as conn, pytest.raises(MigrationError):
        migrate(conn)
