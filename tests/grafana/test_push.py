"""``cbm grafana push`` against a local stand-in for Grafana's HTTP API, through the real SDK."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator

import pytest

from cbm.settings import Settings, from_mapping
from services.broker.local import free_port
from services.grafana.cli import register
from tests.grafana.dashboards import DASHBOARD_DIR
from tests.grafana.fake_grafana import FakeGrafana

SETTINGS = from_mapping({"database": {"url": "postgresql://db.example:6543/plant"}})
ENV = {"GRAFANA_DB_PASSWORD": "s3cret-reader"}


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana().start()
    yield fake
    fake.stop()


def push(
    *argv: str, environ: dict[str, str] | None = None, settings: Settings = SETTINGS
) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["grafana", "push", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = args.handler(
        settings, args, environ=ENV if environ is None else environ, out=out, err=err
    )
    return code, out.getvalue(), err.getvalue()


def base_args(grafana: FakeGrafana, *extra: str) -> list[str]:
    return ["--url", grafana.url, "--token", grafana.token, "--timescaledb", "off", *extra]


def test_first_push_creates_datasource_folder_and_dashboards(grafana: FakeGrafana) -> None:
    code, out, err = push(*base_args(grafana))
    assert (code, err) == (0, "")
    sent = [(r.method, r.path) for r in grafana.requests]
    assert sent[:4] == [
        ("POST", "/api/datasources"),
        ("GET", "/api/folders/cbm"),
        ("POST", "/api/folders"),
        ("POST", "/api/dashboards/db"),
    ]
    assert all(r.headers["Authorization"] == f"Bearer {grafana.token}" for r in grafana.requests)
    datasource = grafana.requests[0].body
    assert datasource["type"] == "grafana-postgresql-datasource"
    assert datasource["uid"] == "cbm-postgres"
    assert datasource["url"] == "db.example:6543" and datasource["user"] == "grafana"
    assert datasource["jsonData"]["database"] == "plant"
    assert datasource["jsonData"]["timescaledb"] is False
    assert datasource["secureJsonData"] == {"password": "s3cret-reader"}
    assert grafana.requests[2].body == {"uid": "cbm", "title": "CBM"}
    files = {p.stem: json.loads(p.read_text()) for p in DASHBOARD_DIR.glob("*.json")}
    posted = [r.body for r in grafana.requests if r.path == "/api/dashboards/db"]
    assert {b["dashboard"]["uid"] for b in posted} == {d["uid"] for d in files.values()}
    for body in posted:
        assert body["folderUid"] == "cbm" and body["overwrite"] is True
        (source,) = [d for d in files.values() if d["uid"] == body["dashboard"]["uid"]]
        assert body["dashboard"] == {**source, "id": None}
    assert "datasource cbm-postgres: created" in out
    assert "folder cbm: created (CBM)" in out
    assert "/d/cbm-fleet/fleet (version 1)" in out


def test_second_push_updates_in_place(grafana: FakeGrafana) -> None:
    assert push(*base_args(grafana))[0] == 0
    grafana.requests.clear()
    code, out, _ = push(*base_args(grafana, "--timescaledb", "on"))
    assert code == 0
    sent = [(r.method, r.path) for r in grafana.requests]
    assert sent[:3] == [
        ("POST", "/api/datasources"),
        ("PUT", "/api/datasources/uid/cbm-postgres"),
        ("GET", "/api/folders/cbm"),
    ]
    assert ("POST", "/api/folders") not in sent
    assert grafana.datasources["cbm-postgres"]["jsonData"]["timescaledb"] is True
    assert "datasource cbm-postgres: updated" in out and "folder cbm: exists" in out
    assert all(d["version"] == 2 for d in grafana.dashboards.values())


def test_without_a_password_grafana_keeps_the_one_it_has(grafana: FakeGrafana) -> None:
    code, _, _ = push(*base_args(grafana, "--db-host", "timescaledb:5432"), environ={})
    assert code == 0
    datasource = grafana.requests[0].body
    assert "secureJsonData" not in datasource
    assert datasource["url"] == "timescaledb:5432"


def test_token_comes_from_the_environment_when_not_given(grafana: FakeGrafana) -> None:
    code, _, err = push(
        "--url", grafana.url, "--timescaledb", "off", environ={"GRAFANA_TOKEN": grafana.token}
    )
    assert (code, err) == (0, "")
    code, _, err = push("--url", grafana.url, "--timescaledb", "off", environ={})
    assert code == 1 and "no token" in err
    # The first push: datasource, folder (get, create), three dashboards; none after.
    assert len(grafana.requests) == 6


@pytest.mark.parametrize("message", ["Unauthorized", "invalid API key"])
def test_a_refused_token_is_a_clear_error(grafana: FakeGrafana, message: str) -> None:
    grafana.unauthorized_message = message
    code, out, err = push("--url", grafana.url, "--token", "wrong", "--timescaledb", "off")
    assert code == 1 and out == ""
    assert "Grafana refused the token (401" in err and "--token" in err
    assert len(grafana.requests) == 1, "stops at the first refusal"
    assert not grafana.datasources and not grafana.dashboards


def test_a_datasource_name_taken_by_another_uid_is_explained(grafana: FakeGrafana) -> None:
    grafana.datasources["someone-else"] = {"uid": "someone-else", "name": "CBM PostgreSQL", "id": 9}
    code, _, err = push(*base_args(grafana))
    assert code == 1
    assert "exists with another uid" in err and "CBM PostgreSQL" in err


def test_an_unreachable_grafana_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = push("--url", url, "--token", "t", "--timescaledb", "off")
    assert code == 1 and f"cannot reach Grafana at {url}" in err


def test_timescaledb_is_asked_of_the_database(grafana: FakeGrafana, db_url: str) -> None:
    settings = from_mapping({"database": {"url": db_url}})
    code, _, err = push("--url", grafana.url, "--token", grafana.token, settings=settings)
    assert (code, err) == (0, "")
    import psycopg

    with psycopg.connect(db_url) as conn:
        has_timescale = conn.execute("SELECT cbm_has_timescaledb()").fetchone()[0]
    assert grafana.requests[0].body["jsonData"]["timescaledb"] is has_timescale


def test_no_database_and_auto_asks_for_the_flag(grafana: FakeGrafana) -> None:
    settings = from_mapping({"database": {"url": f"postgresql://127.0.0.1:{free_port()}/nothing"}})
    code, _, err = push("--url", grafana.url, "--token", grafana.token, settings=settings)
    assert code == 1 and "--timescaledb on or off" in err
    assert grafana.requests == []
