"""The rollups of sql/0006_rollups.sql: same names and columns everywhere, right sums."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.grafana.fleetdata import seed_fleet

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


def has_timescaledb(db: psycopg.Connection[Any]) -> bool:
    return bool(db.execute("SELECT cbm_has_timescaledb()").fetchone()[0])


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


def test_with_timescaledb_they_are_continuous_aggregates(db: psycopg.Connection[Any]) -> None:
    if not has_timescaledb(db):
        pytest.skip("plain PostgreSQL: the rollups are views")
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


def test_without_timescaledb_they_are_views(db: psycopg.Connection[Any]) -> None:
    if has_timescaledb(db):
        pytest.skip("TimescaleDB: continuous aggregates")
    kinds = dict(
        db.execute(
            "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%s)", (list(COLUMNS),)
        ).fetchall()
    )
    assert kinds == dict.fromkeys(COLUMNS, "v")
