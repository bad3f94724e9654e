"""Simulator -> ingest -> features -> inference with the real model, broker and database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from cbm.db import open_pool
from cbm.messages import FeatureVectors
from cbm.prediction import PredictionMessage, decode_prediction, decode_predictions
from services.features.extract import FEATURE_NAMES, FEATURE_SET_VERSION
from services.inference import core
from services.inference.model import RulModel
from services.inference.stage import InferenceStage
from services.simulator.edge import asset_register
from services.simulator.fleet import make_fleet
from services.simulator.run import publish_fleet
from tests.support.inference import step
from tests.support.mqtt import eventually
from tests.support.workers import ProcessWorker, ThreadWorker

MODELS = Path(__file__).resolve().parents[2] / "models"


def offline_predictions(db: psycopg.Connection[Any], settings) -> dict[tuple[str, Any], float]:
    """Replay every stored feature vector through a fresh core: the uninterrupted run."""
    rows = db.execute(
        f"SELECT asset_id, time, seq, received_at, running, {', '.join(FEATURE_NAMES)} "
        "FROM feature_vector ORDER BY time"
    ).fetchall()
    vectors = FeatureVectors(
        feature_set=FEATURE_SET_VERSION,
        columns=FEATURE_NAMES,
        asset_ids=tuple(r[0] for r in rows),
        times=tuple(r[1] for r in rows),
        seqs=tuple(r[2] for r in rows),
        received_at=tuple(r[3] for r in rows),
        running=tuple(r[4] for r in rows),
        values=np.array([[np.nan if v is None else v for v in r[5:]] for r in rows]),
    )
    model = RulModel.load(MODELS)
    rules = core.Rules(
        baseline_vectors=settings.inference.baseline_vectors,
        std_floor=settings.inference.anomaly_std_floor,
    )
    state = core.InferenceState()
    for a in set(vectors.asset_ids):
        state.assets[a] = core.new_sequence(model.lookback, rules)
    _, predictions = core.step(state, vectors, model, rules)
    return {(p.asset_id, p.time): p.rul_hours for p in predictions}


def test_one_prediction_per_vector_and_restart_matches_uninterrupted_run(
    make_settings, db, tmp_path
) -> None:
    specs = make_fleet(3, seed=5, life_mean_hours=40.0, healthy_share=0.0)
    settings = make_settings(
        assets={"items": asset_register(specs)},
        inference={"models_dir": str(MODELS), "baseline_vectors": 5},
    )
    ingest = ThreadWorker(settings, "ingest")
    features = ThreadWorker(settings, "features")
    inference = ProcessWorker(settings, "inference", tmp_path)
    try:
        first = publish_fleet(
            settings, specs, seed=5, speedup=3600 * 100, max_windows=15, progress=None
        )
        eventually(
            lambda: db.execute("SELECT count(*) FROM prediction").fetchone()[0] == len(first.sent),
            timeout=60,
            message="predictions of the first half",
        )
        inference.kill()
        # The fleet goes on while inference is down; the broker queues for it.
        second = publish_fleet(
            settings,
            make_fleet(3, seed=5, life_mean_hours=40.0, healthy_share=0.0),
            seed=5,
            speedup=3600 * 100,
            max_windows=30,
            progress=None,
        )
        sent = len(first.sent) + len(second.sent)
        eventually(
            lambda: db.execute("SELECT count(*) FROM feature_vector").fetchone()[0] == sent,
            timeout=60,
            message="every feature vector",
        )
        inference.start()
        eventually(
            lambda: db.execute("SELECT count(*) FROM prediction").fetchone()[0] == sent,
            timeout=90,
            message="one prediction per feature vector after restart",
        )
        stored = dict(
            ((a, t), r)
            for a, t, r in db.execute("SELECT asset_id, time, rul_hours FROM prediction")
        )
        expected = offline_predictions(db, settings)
        assert stored.keys() == expected.keys()
        worst = max(abs(stored[k] - expected[k]) for k in expected)
        assert worst < 1e-3, f"restarted run differs from the uninterrupted one by {worst} h"
        versions = db.execute("SELECT DISTINCT model_version FROM prediction").fetchall()
        assert versions == [(RulModel.load(MODELS).version,)]
        intervals = db.execute(
            "SELECT count(*) FROM prediction WHERE NOT (rul_low <= rul_hours "
            "AND rul_hours <= rul_high)"
        ).fetchone()[0]
        assert intervals == 0
    finally:
        if inference.alive():
            inference.terminate()
        features.stop()
        ingest.stop()


@pytest.mark.parametrize("per_asset", [True, False])
def test_the_per_asset_topic_can_be_turned_off_and_frames_still_carry_every_prediction(
    make_settings, db, per_asset: bool
) -> None:
    settings = make_settings(inference={"models_dir": str(MODELS), "publish_per_asset": per_asset})
    t0 = datetime(2026, 12, 4, 10, tzinfo=UTC)
    assets = ("pump-1", "pump-2", "fan-3")
    vectors = FeatureVectors(
        feature_set=FEATURE_SET_VERSION,
        columns=FEATURE_NAMES,
        asset_ids=assets,
        times=(t0,) * 3,
        seqs=(1, 1, 1),
        received_at=(t0,) * 3,
        running=(True,) * 3,
        values=np.random.default_rng(2).normal(size=(3, len(FEATURE_NAMES))),
    )
    pool = open_pool(settings, name="test-per-asset")
    try:
        pool.wait()
        stage = InferenceStage(settings)
        stage.prepare(pool)
        effects = step(stage, pool, vectors)
    finally:
        pool.close()
    per = sorted(
        decode_prediction(m.payload).asset_id
        for m in effects.messages
        if "/predictions/" in m.topic
    )
    framed = [
        p for m in effects.messages if "/rul/" in m.topic for _, p in decode_predictions(m.payload)
    ]
    assert per == (sorted(assets) if per_asset else [])
    assert sorted(p.asset_id for p in framed if isinstance(p, PredictionMessage)) == sorted(assets)
    assert db.execute("SELECT count(*) FROM prediction").fetchone() == (3,)
