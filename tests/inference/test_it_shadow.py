"""Shadow mode: a candidate runs beside the live model, is compared, then promoted (real DB)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from cbm.db import open_pool
from cbm.errors import ModelError
from cbm.messages import FeatureVectors, from_micros
from cbm.prediction import PredictionMessage, decode_prediction, decode_predictions
from services.alerter.policy import AlertRules
from services.features.store import write_vectors
from services.inference import core
from services.inference import store as inference_store
from services.inference.model import RulModel, content_version, current_version
from services.inference.stage import InferenceStage
from services.prognostics.backtest import run_backtest
from services.training import shadow_cli
from services.training.artifact import set_pointer
from services.training.dataset import FleetConfig, simulate_table
from services.training.shadow import Comparison, Side
from tests.support.inference import feature_message, run_batch, step
from tests.support.vectors import table_vectors

MODELS = Path(__file__).resolve().parents[2] / "models"


def variant(models: Path, base: str, *, std_factor: float) -> str:
    """Copy ``base`` with its scaler's spread scaled: a valid model that predicts differently."""
    meta = json.loads((models / base / "meta.json").read_text())
    meta["scaler"]["std"] = [s * std_factor for s in meta["scaler"]["std"]]
    tflite = (models / base / "model.tflite").read_bytes()
    version = content_version(tflite, meta)
    meta["version"] = version
    shutil.copytree(models / base, models / version)
    (models / version / "meta.json").write_text(json.dumps(meta))
    return version


def offline(model: RulModel, vectors: FeatureVectors, settings: Any) -> dict[Any, float]:
    rules = core.Rules(baseline_vectors=settings.inference.baseline_vectors, explain_top=0)
    state = core.InferenceState(
        assets={a: core.new_sequence(model.lookback, rules) for a in set(vectors.asset_ids)}
    )
    _, out = core.step(state, vectors, model, rules)
    return {(p.asset_id, p.time): p.rul_hours for p in out}


def test_shadow_runs_beside_live_without_alerting_and_is_promoted_when_better(
    make_settings, db: psycopg.Connection[Any], tmp_path, capsys, monkeypatch, cbm
) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    good = current_version(models)
    # The live model is a distorted copy; the committed model runs in shadow.
    bad = variant(models, good, std_factor=4.0)
    set_pointer(models, "CURRENT", bad)
    settings = make_settings(
        inference={
            "models_dir": str(models),
            "baseline_vectors": 3,
            "explain_top": 0,
            "reload_check_s": 0.001,
        }
    )
    with pytest.raises(ModelError, match="live model already"):
        cbm(settings, "shadow", "start", bad)
    assert cbm(settings, "shadow", "start", good) == 0
    assert "runs in shadow" in capsys.readouterr().out

    table = simulate_table(FleetConfig(n_assets=2, seed=3, life_mean_hours=40, healthy_share=0.0))
    order = np.argsort(table.time_us, kind="stable")
    vectors = table_vectors(table, order)
    for asset in table.assets():
        rows = table.rows(asset, running_only=False)
        last = rows[-1]
        failed_at = from_micros(int(table.time_us[last])) + timedelta(
            hours=float(table.rul_hours[last])
        )
        db.execute(
            "INSERT INTO maintenance_event (asset_id, time, kind, recorded_by)"
            " VALUES (%s, %s, 'failure', 'test')",
            (asset, failed_at),
        )

    pool = open_pool(settings, name="test-shadow")
    try:
        pool.wait()
        with pool.connection() as conn, conn.transaction():
            write_vectors(conn, vectors)
        stage = InferenceStage(settings)
        stage.prepare(pool)
        half = len(vectors) // 2
        first = table_vectors(table, order[:half])
        # The shadow's history read fails once (database trouble): the worker retries
        # the batch, and the live rows of the retry must be the uninterrupted ones.
        loads = {"n": 0}
        load_history = inference_store.load_history

        def flaky(*args: Any, **kwargs: Any) -> Any:
            loads["n"] += 1
            if loads["n"] == 2:
                raise psycopg.OperationalError("connection lost")
            return load_history(*args, **kwargs)

        monkeypatch.setattr(inference_store, "load_history", flaky)
        with pytest.raises(psycopg.OperationalError):
            stage.compute([feature_message(stage, first)])
        effects = step(stage, pool, first)
        # Only the live model's rows are published and stored as predictions.
        per_asset = [m for m in effects.messages if "/predictions/" in m.topic]
        published = [decode_prediction(m.payload) for m in per_asset]
        assert {p.model_version for p in published} == {bad}
        frames = [m for m in effects.messages if "/rul/" in m.topic]  # what the alerter reads
        batched = [p for m in frames for _, p in decode_predictions(m.payload)]
        assert len(batched) == len(first)
        assert {p.model_version for p in batched if isinstance(p, PredictionMessage)} == {bad}
        assert len(effects.shadow) == len(first)
        run_batch(stage, pool, table_vectors(table, order[half:]))

        live_rows = db.execute("SELECT DISTINCT model_version FROM prediction").fetchall()
        assert live_rows == [(bad,)]
        stored = dict(
            ((a, t), r)
            for a, t, r in db.execute(
                "SELECT asset_id, time, rul_hours FROM shadow_prediction WHERE model_version = %s",
                (good,),
            )
        )
        expected = offline(RulModel.load(models, good), vectors, settings)
        assert stored.keys() == expected.keys()
        assert max(abs(stored[k] - expected[k]) for k in expected) < 1e-3
        live_expected = offline(RulModel.load(models, bad), vectors, settings)
        assert max(abs(live_expected[k] - expected[k]) for k in expected) > 1.0
        live = dict(
            ((a, t), r)
            for a, t, r in db.execute("SELECT asset_id, time, rul_hours FROM prediction")
        )
        assert live.keys() == live_expected.keys()
        assert max(abs(live[k] - live_expected[k]) for k in live_expected) < 1e-3

        assert cbm(settings, "shadow", "status", "--json") == 0
        report = json.loads(capsys.readouterr().out)
        assert report["pairs"] == len(vectors) and report["assets"] == 2
        assert report["scored_pairs"] > 0
        assert report["shadow"]["rmse"] < report["live"]["rmse"]
        assert cbm(settings, "shadow", "status") == 0
        text = capsys.readouterr().out
        assert f"shadow {good} beside live {bad}" in text
        assert f"{len(vectors)} paired predictions of 2 assets" in text

        assert cbm(settings, "shadow", "promote", "--by", "pytest") == 0
        assert current_version(models) == good
        assert not (models / "SHADOW").exists()
        (row,) = db.execute(
            "SELECT candidate_version, current_version, decision, decided_by,"
            " candidate_value, current_value FROM model_promotion"
        ).fetchall()
        assert row[:4] == (good, bad, "promoted", "pytest")
        assert row[4] == pytest.approx(report["shadow"]["rmse"])
        assert row[5] == pytest.approx(report["live"]["rmse"])

        # The running stage switches to the promoted model and shadow mode ends.
        again = table_vectors(table, order[-1:])
        (p,) = run_batch(stage, pool, again)
        assert p.model_version == good
        assert stage.shadow is None
    finally:
        pool.close()


def test_promote_keeps_a_shadow_that_is_not_better_unless_forced(
    make_settings, db: psycopg.Connection[Any], tmp_path, capsys, monkeypatch, cbm
) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    live = current_version(models)
    candidate = variant(models, live, std_factor=2.0)
    settings = make_settings(inference={"models_dir": str(models)})
    assert cbm(settings, "shadow", "start", candidate) == 0

    def scored(rmse: float, version: str) -> Side:
        return Side(version=version, rmse=rmse, backtest=run_backtest([], AlertRules()))

    worse = Comparison(
        pairs=10,
        assets=1,
        first=None,
        last=None,
        scored=10,
        mean_abs_diff_hours=1.0,
        live=scored(5.0, live),
        shadow=scored(6.0, candidate),
    )
    monkeypatch.setattr(shadow_cli, "_compare", lambda *_: (candidate, worse))
    capsys.readouterr()
    assert cbm(settings, "shadow", "promote", "--by", "pytest") == 1
    assert "stays in shadow: RMSE 6.00 h is not below 5.00 h" in capsys.readouterr().out
    assert current_version(models) == live and (models / "SHADOW").exists()
    assert db.execute("SELECT count(*) FROM model_promotion").fetchone()[0] == 0

    # No pair had both models running: the mean difference is NaN, which jsonb refuses.
    unpaired = dataclasses.replace(worse, mean_abs_diff_hours=math.nan)
    monkeypatch.setattr(shadow_cli, "_compare", lambda *_: (candidate, unpaired))
    assert cbm(settings, "shadow", "promote", "--by", "pytest", "--force") == 0
    assert current_version(models) == candidate and not (models / "SHADOW").exists()
    (row,) = db.execute("SELECT decision, decided_by, report FROM model_promotion").fetchall()
    assert row[:2] == ("promoted", "pytest") and row[2]["forced"] is True
    assert row[2]["shadow"]["mean_abs_diff_hours"] is None


def test_a_shadow_sequence_resumes_from_its_own_last_rul_not_the_live_models(db) -> None:
    t = datetime(2026, 12, 1, 10, tzinfo=UTC)
    db.execute(
        "INSERT INTO prediction (asset_id, time, received_at, rul_hours, rul_low, rul_high,"
        " health_index, anomaly_score, running, model_version)"
        " VALUES ('fan-1', %s, %s, 10, 8, 12, 0.2, 0, true, 'm-live')",
        (t, t),
    )
    db.execute(
        "INSERT INTO shadow_prediction (asset_id, time, model_version, rul_hours, rul_low,"
        " rul_high, anomaly_score, running) VALUES"
        " ('fan-1', %s, 'm-shadow', 50, 45, 55, 0, true),"
        " ('fan-1', %s, 'm-older', 30, 25, 35, 0, true)",
        (t, t + timedelta(minutes=1)),
    )
    later = {"fan-1": t + timedelta(hours=1)}
    live = inference_store.load_history(db, later, lookback=3, baseline=3)
    shadow = inference_store.load_history(
        db, later, lookback=3, baseline=3, shadow_version="m-shadow"
    )
    assert live["fan-1"].last_rul == (10.0, 8.0, 12.0)
    assert shadow["fan-1"].last_rul == (50.0, 45.0, 55.0)
