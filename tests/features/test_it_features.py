"""Simulator -> ingest -> features against the real broker and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from cbm.messages import FeatureVectors
from services.features.extract import FEATURE_NAMES
from services.features.store import write_vectors
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


def test_stored_vectors_equal_the_computed_ones_and_a_replay_adds_nothing(db) -> None:
    """Every column round-trips (to float4), NaN stays NaN, an overflow is infinity."""
    n = len(FEATURE_NAMES)
    values = np.random.default_rng(3).normal(scale=50.0, size=(3, n))
    values[1, 0] = np.nan
    values[2, 1] = 1e39  # beyond float4
    t0 = datetime(2026, 12, 4, 10, tzinfo=UTC)
    vectors = FeatureVectors(
        feature_set="fs1",
        columns=FEATURE_NAMES,
        asset_ids=("pump-1", "pump-1", "fan-2"),
        times=(t0, t0 + timedelta(seconds=1), t0),
        seqs=(7, 8, 1),
        received_at=(t0 + timedelta(milliseconds=30),) * 3,
        running=(True, False, True),
        values=values,
    )
    with db.transaction():  # the staging table empties at each commit
        assert write_vectors(db, vectors) == 3
    with db.transaction():
        assert write_vectors(db, vectors) == 0
    rows = db.execute(
        "SELECT asset_id, time, seq, received_at, feature_set, running, "
        + ", ".join(FEATURE_NAMES)
        + " FROM feature_vector ORDER BY asset_id DESC, time"
    ).fetchall()
    for row, i in zip(rows, range(3), strict=True):
        assert row[:6] == (
            vectors.asset_ids[i],
            vectors.times[i],
            vectors.seqs[i],
            vectors.received_at[i],
            "fs1",
            vectors.running[i],
        )
        with np.errstate(over="ignore"):
            expected = values[i].astype(np.float32)
        np.testing.assert_array_equal(np.array(row[6:], dtype=np.float32), expected)
    assert np.isnan(rows[1][6]) and rows[2][7] == float("inf")
