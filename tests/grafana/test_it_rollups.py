"""The rollups (sql/0006, sql/0010): same names and columns everywhere, right sums.

On plain PostgreSQL they are views over tables of partial aggregates that
triggers keep current; the tests here hold them to the aggregate of the raw
rows after every kind of write the pipeline does (batches, replays with
duplicates, late rows), through the stages' own writers.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cbm.migrate import SQL_DIR, migrate
from tests.grafana.fleetdata import seed_fleet
from tests.grafana.stagewrites import stage_batch, write_stage_batch
from tests.support.services import Postgres

COLUMNS = {
    "prediction_hourly": [
        "time", "asset_id", "predictions", "rul_hours", "rul_low", "rul_high", "rul_min",
        "health_index", "anomaly_score", "anomaly_max", "lag_avg_s", "lag_max_s",
    ],
    "feature_hourly": [
        "time", "asset_id", "vectors", "running_vectors", "rms", "rms_max", "kurtosis",
        "crest_factor", "env_bpfo", "env_bpfi", "env_bsf", "temperature_c", "lag_avg_s",
        "lag_max_s",
    ],
    "ingest_window_minute": [
        "time", "windows", "without_temperature", "lag_avg_s", "lag_max_s",
    ],
}  # fmt: skip


# The rollups as 0006 defines them, straight from the raw rows: what they must equal.
_BUCKET = "date_bin(interval '{}', time, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
FROM_RAW = {
    "prediction_hourly": f"""
SELECT {_BUCKET.format("1 hour")} AS time, asset_id, count(*), avg(rul_hours), avg(rul_low),
       avg(rul_high), min(rul_hours), avg(health_index), avg(anomaly_score), max(anomaly_score),
       avg(date_part('epoch', created_at - time)), max(date_part('epoch', created_at - time))
FROM prediction GROUP BY 1, 2""",
    "feature_hourly": f"""
SELECT {_BUCKET.format("1 hour")} AS time, asset_id, count(*),
       sum(CASE WHEN running THEN 1 ELSE 0 END), avg(CASE WHEN running THEN rms END),
       max(CASE WHEN running THEN rms END), avg(CASE WHEN running THEN kurtosis END),
       avg(CASE WHEN running THEN crest_factor END), avg(CASE WHEN running THEN env_bpfo END),
       avg(CASE WHEN running THEN env_bpfi END), avg(CASE WHEN running THEN env_bsf END),
       avg(temperature_mean_c), avg(date_part('epoch', computed_at - time)),
       max(date_part('epoch', computed_at - time))
FROM feature_vector GROUP BY 1, 2""",
    "ingest_window_minute": f"""
SELECT {_BUCKET.format("1 minute")} AS time, count(*),
       sum(CASE WHEN temperature_status = 'missing' THEN 1 ELSE 0 END),
       avg(date_part('epoch', received_at - time)), max(date_part('epoch', received_at - time))
FROM ingest_window GROUP BY 1""",
}


def has_timescaledb(db: psycopg.Connection[Any]) -> bool:
    return bool(db.execute("SELECT cbm_has_timescaledb()").fetchone()[0])


def assert_rollups_match_raw_rows(db: psycopg.Connection[Any]) -> None:
    """Fail unless every rollup holds exactly the aggregate of the raw rows, bucket by bucket."""
    if has_timescaledb(db):
        for name in COLUMNS:
            db.execute(f"CALL refresh_continuous_aggregate('{name}', NULL, NULL)")
    for name, columns in COLUMNS.items():
        order = "asset_id, time" if "asset_id" in columns else "time"
        rolled = db.execute(f"SELECT {', '.join(columns)} FROM {name} ORDER BY {order}").fetchall()
        raw = db.execute(f"SELECT * FROM ({FROM_RAW[name]}) AS r ORDER BY {order}").fetchall()
        assert len(rolled) == len(raw), name
        for got, want in zip(rolled, raw, strict=True):
            assert got[:2] == want[:2], name  # bucket and asset (or count)
            assert got[2:] == pytest.approx(want[2:], rel=1e-9, abs=1e-9, nan_ok=True), (
                name,
                got[:2],
            )


def replay(
    db: psycopg.Connection[Any],
    start: datetime,
    *,
    assets: int,
    steps: range,
) -> None:
    """Write one batch per step through each stage's writer, as the stages do."""
    for k in steps:
        batch = stage_batch(start, assets=assets, k=k)
        with db.transaction():
            write_stage_batch(db, batch)


def test_rollups_have_their_columns(db: psycopg.Connection[Any]) -> None:
    for name, expected in COLUMNS.items():
        found = [
            r[0]
            for r in db.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = %s ORDER BY ordinal_position",
                (name,),
            )
        ]
        assert found == expected, name


def test_rollups_agree_with_the_raw_rows(db: psycopg.Connection[Any]) -> None:
    seed_fleet(db, assets=4, days=1.0, step_s=300)
    if has_timescaledb(db):
        for name in COLUMNS:
            db.execute(f"CALL refresh_continuous_aggregate('{name}', NULL, NULL)")
    totals = db.execute(
        "SELECT (SELECT count(*) FROM prediction),"
        " (SELECT sum(predictions) FROM prediction_hourly),"
        " (SELECT count(*) FROM feature_vector), (SELECT sum(vectors) FROM feature_hourly),"
        " (SELECT count(*) FROM ingest_window), (SELECT sum(windows) FROM ingest_window_minute)"
    ).fetchone()
    assert totals is not None and totals[0] > 0
    assert totals[0] == totals[1] and totals[2] == totals[3] and totals[4] == totals[5]
    hour = db.execute(
        "SELECT asset_id, time FROM prediction_hourly ORDER BY predictions DESC, time LIMIT 1"
    ).fetchone()
    assert hour is not None
    direct = db.execute(
        "SELECT count(*), avg(rul_hours), min(rul_hours), max(anomaly_score) FROM prediction "
        "WHERE asset_id = %s AND time >= %s AND time < %s + interval '1 hour'",
        (hour[0], hour[1], hour[1]),
    ).fetchone()
    rolled = db.execute(
        "SELECT predictions, rul_hours, rul_min, anomaly_max FROM prediction_hourly "
        "WHERE asset_id = %s AND time = %s",
        hour,
    ).fetchone()
    assert rolled is not None and direct is not None
    assert rolled[0] == direct[0]
    assert rolled[1:] == pytest.approx(direct[1:], rel=1e-6)
    buckets = db.execute(
        "SELECT count(*) FROM ingest_window_minute WHERE date_trunc('minute', time) <> time"
    ).fetchone()
    assert buckets == (0,), "minute buckets start on the minute"
    assert_rollups_match_raw_rows(db)


def test_with_timescaledb_they_are_continuous_aggregates(db: psycopg.Connection[Any]) -> None:
    if not has_timescaledb(db):
        pytest.skip("plain PostgreSQL: views over tables kept by triggers")
    found = dict(
        db.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        ).fetchall()
    )
    assert {name: found.get(name) for name in COLUMNS} == dict.fromkeys(COLUMNS, False)
    policies = {
        r[0]
        for r in db.execute(
            "SELECT hypertable_name FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        )
    }
    assert len(policies) >= len(COLUMNS)


def test_without_timescaledb_they_are_views_over_tables_kept_by_triggers(
    db: psycopg.Connection[Any],
) -> None:
    if has_timescaledb(db):
        pytest.skip("TimescaleDB: continuous aggregates")
    partials = [f"{name}_partial" for name in COLUMNS]
    kinds = dict(
        db.execute(
            "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%s)",
            (list(COLUMNS) + partials,),
        ).fetchall()
    )
    assert kinds == {**dict.fromkeys(COLUMNS, "v"), **dict.fromkeys(partials, "r")}
    triggers = {
        (r[0], r[1])
        for r in db.execute(
            "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"
        )
    }
    for name, raw in (
        ("prediction_hourly", "prediction"),
        ("feature_hourly", "feature_vector"),
        ("ingest_window_minute", "ingest_window"),
    ):
        for event in ("insert", "update", "delete", "truncate"):
            assert (raw, f"{name}_{event}") in triggers


def test_stage_writes_replays_and_late_rows_are_counted_once(db: psycopg.Connection[Any]) -> None:
    start = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)
    replay(db, start, assets=5, steps=range(0, 60))
    # At-least-once delivery: whole batches again, and batches overlapping
    # the stored ones, every duplicate skipped by ON CONFLICT DO NOTHING.
    replay(db, start, assets=5, steps=range(20, 40))
    replay(db, start, assets=5, steps=range(55, 70))
    # Late rows into buckets already rolled up, out of order.
    replay(db, start - timedelta(hours=1), assets=5, steps=range(30, 45))
    counts = db.execute(
        "SELECT (SELECT count(*) FROM prediction),"
        " (SELECT sum(predictions) FROM prediction_hourly),"
        " (SELECT count(*) FROM feature_vector), (SELECT sum(vectors) FROM feature_hourly),"
        " (SELECT count(*) FROM ingest_window), (SELECT sum(windows) FROM ingest_window_minute)"
    ).fetchone()
    assert counts == (5 * 85,) * 6
    assert_rollups_match_raw_rows(db)


def test_a_statement_of_duplicates_only_adds_nothing(db: psycopg.Connection[Any]) -> None:
    if has_timescaledb(db):
        pytest.skip("TimescaleDB: continuous aggregates, no partial tables")
    start = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)
    replay(db, start, assets=3, steps=range(0, 5))
    before = db.execute("SELECT * FROM prediction_hourly_partial ORDER BY 1, 2").fetchall()
    replay(db, start, assets=3, steps=range(0, 5))
    db.execute(
        "INSERT INTO prediction SELECT * FROM prediction ON CONFLICT DO NOTHING"
    )  # one statement, every row a duplicate
    assert db.execute("SELECT * FROM prediction_hourly_partial ORDER BY 1, 2").fetchall() == before


def test_updates_deletes_and_truncate_recompute_the_buckets(db: psycopg.Connection[Any]) -> None:
    if has_timescaledb(db):
        pytest.skip("TimescaleDB: continuous aggregates follow changes on refresh")
    start = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)
    replay(db, start, assets=4, steps=range(0, 80))
    # The minimum and maximum of a bucket go away with the rows that held them.
    db.execute(
        "DELETE FROM prediction WHERE (asset_id, time) IN ("
        " SELECT DISTINCT ON (asset_id) asset_id, time FROM prediction"
        " ORDER BY asset_id, rul_hours)"
    )
    db.execute("DELETE FROM feature_vector WHERE running AND seq % 7 = 0")
    db.execute("DELETE FROM ingest_window WHERE asset_id = 'roll-1'")
    # Rows that move to another bucket leave the old one and join the new one.
    db.execute(
        "UPDATE prediction SET time = time + interval '2 hours', anomaly_score = 9 "
        "WHERE asset_id = 'roll-2' AND time < %s",
        (start + timedelta(minutes=30),),
    )
    db.execute("UPDATE feature_vector SET running = NOT running WHERE asset_id = 'roll-3'")
    db.execute("UPDATE ingest_window SET temperature_status = 'missing' WHERE asset_id = 'roll-0'")
    assert_rollups_match_raw_rows(db)
    db.execute("TRUNCATE prediction, feature_vector, ingest_window")
    empty = db.execute(
        "SELECT (SELECT count(*) FROM prediction_hourly), (SELECT count(*) FROM feature_hourly),"
        " (SELECT count(*) FROM ingest_window_minute)"
    ).fetchone()
    assert empty == (0, 0, 0)


def test_migrating_an_installation_folds_in_its_history(postgres: Postgres, tmp_path: Path) -> None:
    """History written before 0010 (rollups were views then) is in the tables after it."""
    name = f"cbm_test_rollup_{datetime.now(UTC):%H%M%S%f}"
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(postgres.url_for(name), autocommit=True) as conn:
            before = tmp_path / "sql"
            before.mkdir()
            for path in sorted(SQL_DIR.glob("*.sql")):
                if int(path.name[:4]) < 10:
                    shutil.copy(path, before / path.name)
            migrate(conn, before)
            seed_fleet(conn, assets=3, days=0.5, step_s=300)
            replay(conn, datetime(2026, 3, 1, tzinfo=UTC), assets=3, steps=range(0, 30))
            assert "0010_dashboard_rollups.sql" in migrate(conn)
            assert_rollups_match_raw_rows(conn)
            replay(conn, datetime(2026, 3, 1, tzinfo=UTC), assets=3, steps=range(20, 40))
            assert_rollups_match_raw_rows(conn)
    finally:
        with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
