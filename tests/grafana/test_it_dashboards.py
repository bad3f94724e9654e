"""Every dashboard query runs on the real database, seeded with a simulated fleet.

Each query is expanded as Grafana would (tests/grafana/macros.py), for a short
range (raw tables) and a long one (rollups), with the datasource's TimescaleDB
switch off (epoch arithmetic) and on (time_bucket; a stand-in function where
the extension is missing), for every value its variables can take, and as
the read-only role Grafana logs in with. The result must have what the panel
type needs.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.grafana.dashboards import Query, all_queries, load_dashboards, queries
from tests.grafana.fleetdata import Fleet, seed_fleet
from tests.grafana.macros import TimeRange, Variable, expand
from tests.support.services import Postgres

QUERIES = all_queries()
SPANS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
# time_bucket() for the TimescaleDB flavour of the macros where the extension is missing.
TIME_BUCKET_STAND_IN = """
CREATE FUNCTION time_bucket(bucket_width interval, ts timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$ SELECT date_bin(bucket_width, ts, TIMESTAMPTZ '2000-01-03') $$
"""


@dataclass
class Seeded:
    url: str
    fleet: Fleet


@pytest.fixture(scope="module")
def seeded(postgres: Postgres, template_db: str) -> Iterator[Seeded]:
    """One database with three days of a twelve-asset fleet, shared by this module."""
    name = f"{template_db}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = postgres.url_for(name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            fleet = seed_fleet(conn, assets=12, days=3.0, step_s=600)
            if not conn.execute("SELECT cbm_has_timescaledb()").fetchone()[0]:
                conn.execute(TIME_BUCKET_STAND_IN)
                conn.execute(
                    "GRANT EXECUTE ON FUNCTION time_bucket(interval, timestamptz) TO cbm_grafana"
                )
        yield Seeded(url, fleet)
    finally:
        with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def reader(seeded: Seeded) -> Iterator[psycopg.Connection[Any]]:
    """A connection acting as Grafana's read-only role."""
    with psycopg.connect(seeded.url, autocommit=True) as conn:
        conn.execute("SET ROLE cbm_grafana")
        yield conn


def variable_choices(conn: psycopg.Connection[Any], uid: str) -> list[dict[str, Variable]]:
    """Return every combination of values the dashboard's variables can take, as Grafana would."""
    (dashboard,) = [d for d in load_dashboards().values() if d["uid"] == uid]
    per_variable: dict[str, list[Variable]] = {}
    for definition in dashboard["templating"]["list"]:
        options = tuple(str(r[0]) for r in conn.execute(definition["query"]))
        if definition.get("multi") or definition.get("includeAll"):
            # "All", and one value alone.
            per_variable[definition["name"]] = [
                Variable(options, multi=True, include_all=True),
                Variable(options[:1], multi=True, include_all=True),
            ]
        else:
            per_variable[definition["name"]] = [Variable((o,)) for o in options]
    names = list(per_variable)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(per_variable[n] for n in names))
    ]


def run(conn: psycopg.Connection[Any], sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = conn.execute(sql)
    assert cur.description is not None
    return [c.name for c in cur.description], cur.fetchall()


def is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def check_shape(query: Query, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Fail unless a non-empty result has the columns its panel type needs."""
    assert len(set(columns)) == len(columns), f"duplicate columns {columns}"
    by_name = {name: [r[i] for r in rows] for i, name in enumerate(columns)}
    if query.panel_type == "timeseries":
        assert "time" in by_name, columns
        times = [t.timestamp() if isinstance(t, datetime) else float(t) for t in by_name["time"]]
        assert times == sorted(times), "time must ascend"
        values = [c for c in columns if c not in ("time", "metric")]
        assert values and any(is_number(v) for c in values for v in by_name[c]), columns
        for c in values:
            assert all(v is None or is_number(v) for v in by_name[c]), f"{c} is not numeric"
        if "metric" in by_name:
            assert all(isinstance(m, str) for m in by_name["metric"])
    elif query.panel_type == "stat":
        assert len(rows) == 1, "a stat reads one row"
        assert all(v is None or is_number(v) for v in rows[0]), dict(
            zip(columns, rows[0], strict=True)
        )
    elif query.panel_type == "annotation":
        assert {"time", "text", "tags"} <= set(columns), columns
        assert all(isinstance(t, datetime) for t in by_name["time"])
        assert all(isinstance(t, str) and t for t in by_name["text"])
    elif query.panel_type == "variable":
        assert len(columns) == 1 and all(isinstance(v, str) for v in by_name[columns[0]])
    else:
        assert columns and all(columns)
        for value in itertools.chain.from_iterable(rows):
            assert value is None or isinstance(
                value, str | int | float | Decimal | datetime | date | bool
            ), type(value)


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_query_runs_as_grafana_and_fits_its_panel(
    query: Query, seeded: Seeded, reader: psycopg.Connection[Any]
) -> None:
    non_empty = 0
    runs = 0
    for span_name, span in SPANS.items():
        time_range = TimeRange.last(span, end=seeded.fleet.end)
        for variables in variable_choices(reader, query.dashboard):
            for timescaledb in (False, True):
                sql = expand(query.sql, time_range, variables, timescaledb=timescaledb)
                try:
                    columns, rows = run(reader, sql)
                except psycopg.Error as exc:
                    pytest.fail(
                        f"{span_name}, timescaledb={timescaledb}, {variables}: {exc}\n{sql}"
                    )
                runs += 1
                if rows:
                    non_empty += 1
                    check_shape(query, columns, rows)
    assert runs and non_empty, "the seeded fleet gives every query something to show"


def test_fleet_table_puts_the_most_urgent_asset_first(
    seeded: Seeded, reader: psycopg.Connection[Any]
) -> None:
    (dashboard,) = [d for d in load_dashboards().values() if d["uid"] == "cbm-fleet"]
    table = next(q for q in queries(dashboard) if q.panel_type == "table")
    everything = Variable(
        tuple(r[0] for r in reader.execute("SELECT DISTINCT site FROM asset")),
        multi=True,
        include_all=True,
    )
    sql = expand(
        table.sql, TimeRange.last(SPANS["24h"], end=seeded.fleet.end), {"site": everything}
    )
    columns, rows = run(reader, sql)
    result = [dict(zip(columns, r, strict=True)) for r in rows]
    assert len(result) == len(seeded.fleet.assets)
    levels = [r["level"] for r in result]
    assert levels == sorted(levels, reverse=True)
    assert result[0]["level"] == 3 and result[0]["rul_hours"] < 5
    # The asset without alert state takes its level from its latest alert.
    (no_state,) = [r for r in result if r["asset_id"] in seeded.fleet.without_state]
    assert no_state["level"] == 1
    stale = {r["asset_id"] for r in result if r["data"] == "stale"}
    assert stale == set(seeded.fleet.stale)
    # About -24 h a day (the seeded RUL falls an hour per hour, with 3 % noise).
    near_end = [r for r in result if r["rul_hours"] is not None and r["rul_hours"] < 60]
    assert near_end and all(-30 < r["rul_change_24h"] < -18 for r in near_end)


def test_the_read_only_role_cannot_write(reader: psycopg.Connection[Any]) -> None:
    statements = [
        "INSERT INTO asset (asset_id) VALUES ('intruder')",
        "UPDATE prediction SET rul_hours = 0",
        "DELETE FROM alert",
        "CREATE TABLE intruder (id int)",
        "TRUNCATE dead_letter",
    ]
    for statement in statements:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(statement)
