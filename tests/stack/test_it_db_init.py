"""grafana/db-init/grafana-reader.sh creates Grafana's login, read-only, and can run again."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.support.services import ROOT, Postgres

SCRIPT = ROOT / "grafana" / "db-init" / "grafana-reader.sh"

pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="needs psql")


@pytest.fixture
def reader_name(postgres: Postgres) -> Iterator[str]:
    # Roles are cluster-wide: a unique name, dropped afterwards.
    name = f"cbm_test_reader_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def run_script(db_url: str, reader: str, password: str) -> subprocess.CompletedProcess[str]:
    url = urlsplit(db_url)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "GRAFANA_"))},
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PGDATABASE": url.path.lstrip("/"),
        "GRAFANA_DB_USER": reader,
        "GRAFANA_DB_PASSWORD": password,
    }
    if url.password:
        env["PGPASSWORD"] = url.password
    return subprocess.run(
        ["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_creates_a_read_only_member_of_cbm_grafana(
    db: psycopg.Connection[Any], db_url: str, reader_name: str
) -> None:
    first = run_script(db_url, reader_name, "first 'secret'")
    assert first.returncode == 0, first.stderr
    again = run_script(db_url, reader_name, "second secret")
    assert again.returncode == 0, again.stderr
    assert again.stderr == "", "a second run is quiet"
    row = db.execute(
        "SELECT rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb, rolconfig, "
        "pg_has_role(rolname, 'cbm_grafana', 'member') FROM pg_roles WHERE rolname = %s",
        (reader_name,),
    ).fetchone()
    assert row is not None
    login, inherit, superuser, createrole, createdb, config, member = row
    assert (login, inherit, member) == (True, True, True)
    assert not (superuser or createrole or createdb)
    assert "default_transaction_read_only=on" in config
    # Reads everything the dashboards need, writes nothing.
    db.execute(f'SET ROLE "{reader_name}"')
    try:
        for table in ("asset", "prediction", "prediction_hourly", "alert", "alert_state"):
            db.execute(f"SELECT count(*) FROM {table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("INSERT INTO asset (asset_id) VALUES ('intruder')")
    finally:
        db.execute("RESET ROLE")


def test_refuses_to_run_without_a_password(db_url: str, reader_name: str) -> None:
    result = run_script(db_url, reader_name, "")
    assert result.returncode != 0
    assert "GRAFANA_DB_PASSWORD" in result.stderr
