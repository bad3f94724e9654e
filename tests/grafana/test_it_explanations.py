"""The asset dashboard's explanations: the engineer's words, the same as in Slack."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from services.alerter.message import DRIVER_NAMES, FEATURE_PHRASES
from tests.grafana.dashboards import load_dashboards, queries
from tests.grafana.fleetdata import seed_fleet
from tests.grafana.macros import TimeRange, Variable, expand

DRIVERS_PANEL = "Why: drivers of the latest prediction [A]"
HISTORY_PANEL = "Explanations over time [A]"


def expected_phrases() -> list[tuple[str, str, str | None]]:
    """Return the rows feature_phrase must hold: Slack's label and fault hint per feature."""
    return sorted(
        (feature, label, FEATURE_PHRASES[feature][1] if feature in FEATURE_PHRASES else None)
        for feature, label in DRIVER_NAMES.items()
    )


def as_sql_values(rows: list[tuple[str, str, str | None]]) -> str:
    def literal(value: str | None) -> str:
        return "NULL" if value is None else "'" + value.replace("'", "''") + "'"

    return ",\n".join(f"    ({', '.join(literal(v) for v in row)})" for row in rows) + ";"


def panel_sql(title: str) -> str:
    (dashboard,) = [d for d in load_dashboards().values() if d["uid"] == "cbm-asset"]
    (query,) = [q for q in queries(dashboard) if q.title == title]
    return query.sql


def test_feature_phrases_in_the_database_are_the_slack_wording(
    db: psycopg.Connection[Any],
) -> None:
    stored = db.execute("SELECT feature, label, hint FROM feature_phrase ORDER BY 1").fetchall()
    expected = expected_phrases()
    assert stored == expected, (
        "services/alerter/message.py words the features differently from the feature_phrase "
        "table: add a migration that rewrites its rows to\n" + as_sql_values(expected)
    )


def test_the_drivers_panel_shows_the_latest_explanation_in_words(
    db: psycopg.Connection[Any],
) -> None:
    fleet = seed_fleet(db, assets=3, days=0.5, step_s=600)
    asset = fleet.assets[0]
    explained_at = fleet.end + timedelta(minutes=1)
    row = (
        "INSERT INTO prediction (asset_id, time, received_at, rul_hours, rul_low, rul_high, "
        "health_index, anomaly_score, running, model_version, top_features) "
        "VALUES (%s, %s, %s, 4, 3, 6, 0.01, 2.5, %s, 'm', %s)"
    )
    top = [["env_bpfi", 6.0], ["no_such_feature", 3.0], ["rms", 1.0]]
    db.execute(row, (asset, explained_at, explained_at, True, Jsonb(top)))
    # Newer, but stopped: no explanation, so the panel keeps the one before.
    later = explained_at + timedelta(minutes=1)
    db.execute(row, (asset, later, later, False, Jsonb([])))
    db.execute("SET ROLE cbm_grafana")
    sql = expand(
        panel_sql(DRIVERS_PANEL),
        TimeRange.last(timedelta(hours=6), end=later),
        {"asset": Variable((asset,))},
    )
    cur = db.execute(sql)
    assert cur.description is not None
    got = [dict(zip([c.name for c in cur.description], r, strict=True)) for r in cur.fetchall()]
    assert [r["Driver"] for r in got] == [
        DRIVER_NAMES["env_bpfi"],
        "no_such_feature",
        DRIVER_NAMES["rms"],
    ]
    assert [r["Points at"] for r in got] == [
        FEATURE_PHRASES["env_bpfi"][1],
        None,
        "wear, looseness or imbalance?",
    ]
    assert [r["RUL back if healthy"] for r in got] == [6.0, 3.0, 1.0]
    assert [r["Share"] for r in got] == pytest.approx([0.6, 0.3, 0.1])
    assert [r["Rank"] for r in got] == [1, 2, 3]
    assert {r["Prediction"] for r in got} == {explained_at}


def test_the_history_panel_lists_each_change_of_drivers(db: psycopg.Connection[Any]) -> None:
    fleet = seed_fleet(db, assets=1, days=30.0, step_s=3600)
    asset = fleet.assets[0]  # RUL falls to 3 h: three regimes of drivers in the seed
    db.execute("SET ROLE cbm_grafana")
    sql = expand(
        panel_sql(HISTORY_PANEL),
        TimeRange.last(timedelta(days=30), end=fleet.end),
        {"asset": Variable((asset,))},
    )
    cur = db.execute(sql)
    assert cur.description is not None
    got = [dict(zip([c.name for c in cur.description], r, strict=True)) for r in cur.fetchall()]
    times = [r["Since"] for r in got]
    assert times == sorted(times, reverse=True), "newest first"
    drivers = [r["Drivers (RUL back if healthy)"] for r in got]
    # Newest: inner race first, then outer race, then an input without a phrase.
    assert drivers[0].startswith(f"{DRIVER_NAMES['env_bpfi']} +")
    assert f", {DRIVER_NAMES['env_bpfo']} +" in drivers[0]
    assert drivers[0].endswith(", spectral_kurtosis_x +0.5 h")
    assert any(d.startswith(f"{DRIVER_NAMES['env_bpfo']} +") for d in drivers)
    assert drivers[-1].startswith(f"{DRIVER_NAMES['rms']} +")
    # Each row differs from the one before it in which drivers, or their order.
    rankings = [[part.split(" +")[0] for part in d.split(", ")] for d in drivers]
    assert all(a != b for a, b in itertools.pairwise(rankings))
    assert len(got) == 3
