"""Simulator -> ingest -> features against the real broker and database."""

from __future__ import annotations

from typing import Any

import psycopg

from services.features.extract import FEATURE_NAMES
from services.simulator.edge import Faults, asset_register
from services.simulator.fleet import make_fleet
from services.simulator.run import publish_fleet
from tests.support.mqtt import eventually
from tests.support.workers import ThreadWorker


def test_feature_vector_table_has_one_column_per_feature(db: psycopg.Connection[Any]) -> None:
    cols = [
        r[0]
        for r in db.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'feature_vector' ORDER BY ordinal_position"
        )
    ]
    assert cols[cols.index("running") + 1 :] == list(FEATURE_NAMES)


def test_every_published_window_gets_exactly_one_feature_vector(make_settings, db) -> None:
    specs = make_fleet(3, seed=11, life_mean_hours=60.0, healthy_share=0.0)
    settings = make_settings(assets={"items": asset_register(specs)})
    ingest = ThreadWorker(settings, "ingest")
    features = ThreadWorker(settings, "features")
    try:
        tally = publish_fleet(
            settings,
            specs,
            seed=11,
            speedup=3600 * 200,
            max_windows=40,
            faults=Faults(duplicate=0.2, glitch=0.05),
            progress=None,
        )
        assert tally.duplicates > 0 and tally.bad > 0
        expected = set(tally.sent)
        eventually(
            lambda: (
                db.execute("SELECT count(*) FROM feature_vector").fetchone()[0] >= len(expected)
            ),
            timeout=30,
            message="feature rows for every window",
        )
        rows = db.execute("SELECT asset_id, time FROM feature_vector").fetchall()
        assert len(rows) == len(expected)
        assert set(rows) == expected
        stored = db.execute(
            "SELECT count(*) FILTER (WHERE rms > 0), count(*) FILTER (WHERE running), "
            "count(DISTINCT feature_set), min(env_bpfo), count(temperature_mean_c) "
            "FROM feature_vector"
        ).fetchone()
        assert stored[0] > 0 and stored[1] > 0 and stored[2] == 1 and stored[3] >= 0
        assert stored[4] == len(expected), "every window has a temperature trend"
        dead = db.execute("SELECT count(*) FROM dead_letter WHERE reason = 'duplicate'").fetchone()[
            0
        ]
        assert dead == tally.duplicates
    finally:
        features.stop()
        ingest.stop()
