"""A repair or replacement starts the asset's sequence and baseline again (real model and DB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from cbm.db import open_pool
from cbm.messages import FeatureVectors
from cbm.prediction import PredictionMessage
from services.features.store import write_vectors
from services.inference import core
from services.inference.model import RulModel
from services.inference.stage import InferenceStage
from services.training.dataset import FleetConfig, simulate_table
from tests.support.inference import run_batch
from tests.support.vectors import asset_vectors

MODELS = Path(__file__).resolve().parents[2] / "models"
ASSET = "pump-1"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
REPLACED_AT = T0 + timedelta(hours=12, minutes=30)
# Short baseline, no explanations, and the repair table read at every batch.
INFERENCE = {
    "models_dir": str(MODELS),
    "baseline_vectors": 3,
    "explain_top": 0,
    "reload_check_s": 0.001,
}


def vectors(values: np.ndarray, first_hour: int) -> FeatureVectors:
    times = [T0 + timedelta(hours=first_hour + i) for i in range(len(values))]
    return asset_vectors(ASSET, values, times, first_seq=first_hour)


@pytest.fixture(scope="module")
def lives() -> tuple[FeatureVectors, FeatureVectors]:
    """The last 12 hours of a worn bearing, then the first 8 of a new one."""
    table = simulate_table(FleetConfig(n_assets=2, seed=3, life_mean_hours=40, healthy_share=0.0))
    rows = table.rows(table.assets()[0])
    return vectors(table.values[rows[-12:]], 0), vectors(table.values[rows[:8]], 13)


def record_replacement(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO maintenance_event (asset_id, time, kind, note, recorded_by) "
        "VALUES (%s, %s, 'replacement', 'new bearing', 'test')",
        (ASSET, REPLACED_AT),
    )


def offline(*batches: FeatureVectors, settings: Any) -> PredictionMessage:
    """The prediction an uninterrupted core gives for the last row after ``batches``."""
    model = RulModel.load(MODELS)
    rules = core.Rules(baseline_vectors=settings.inference.baseline_vectors, explain_top=0)
    state = core.InferenceState(assets={ASSET: core.new_sequence(model.lookback, rules)})
    out: list[PredictionMessage] = []
    for batch in batches:
        state, predicted = core.step(state, batch, model, rules)
        out += predicted
    return out[-1]


def test_replacement_restarts_sequence_live_and_after_a_restart(
    make_settings, db: psycopg.Connection[Any], lives
) -> None:
    old, new = lives
    settings = make_settings(inference=INFERENCE)
    head, last = vectors(new.values[:7], 13), vectors(new.values[7:], 20)
    expected = offline(new, settings=settings)
    carried_over = offline(old, new, settings=settings)
    # The scenario must tell the two apart, or the test below proves nothing.
    assert (
        abs(carried_over.rul_hours - expected.rul_hours) > 0.5
        or abs(carried_over.anomaly_score - expected.anomaly_score) > 0.5
    )

    pool = open_pool(settings, name="test-renewal")
    try:
        pool.wait()
        with pool.connection() as conn, conn.transaction():
            write_vectors(conn, old)
        live = InferenceStage(settings)
        live.prepare(pool)
        run_batch(live, pool, old)
        with pool.connection() as conn, conn.transaction():
            record_replacement(conn)
            write_vectors(conn, head)
        run_batch(live, pool, head)
        (got,) = run_batch(live, pool, last)
        assert got.rul_hours == pytest.approx(expected.rul_hours, abs=1e-3)
        assert got.anomaly_score == pytest.approx(expected.anomaly_score, abs=1e-3)

        # A stage that starts after the replacement rebuilds the new life only.
        restarted = InferenceStage(settings)
        restarted.prepare(pool)
        (again,) = run_batch(restarted, pool, last)
        assert again.rul_hours == pytest.approx(expected.rul_hours, abs=1e-3)
        assert again.anomaly_score == pytest.approx(expected.anomaly_score, abs=1e-3)
    finally:
        pool.close()
    assert db.execute("SELECT count(*) FROM prediction").fetchone()[0] == len(old) + len(new)


def test_a_replacement_recorded_before_a_backlog_applies_at_its_event_time(
    make_settings, db: psycopg.Connection[Any], lives
) -> None:
    """The event is known before the old life's vectors arrive: they still count as old."""
    old, new = lives
    settings = make_settings(inference=INFERENCE)
    record_replacement(db)
    head, last = vectors(new.values[:7], 13), vectors(new.values[7:], 20)
    pool = open_pool(settings, name="test-renewal-backlog")
    try:
        pool.wait()
        live = InferenceStage(settings)
        live.prepare(pool)
        for batch in (old, head, last):
            with pool.connection() as conn, conn.transaction():
                write_vectors(conn, batch)
        backlog = run_batch(live, pool, old)
        run_batch(live, pool, head)
        (got,) = run_batch(live, pool, last)
    finally:
        pool.close()
    # The old life's rows continue the old sequence; the new life starts afresh.
    assert backlog[-1].rul_hours == pytest.approx(
        offline(old, settings=settings).rul_hours, abs=1e-3
    )
    expected = offline(new, settings=settings)
    assert got.rul_hours == pytest.approx(expected.rul_hours, abs=1e-3)
    assert got.anomaly_score == pytest.approx(expected.anomaly_score, abs=1e-3)


def test_a_replacement_recorded_late_still_restarts_the_new_life(
    make_settings, db: psycopg.Connection[Any], lives
) -> None:
    """The new bearing's first hours went into the old sequence before anyone recorded it."""
    old, new = lives
    settings = make_settings(inference=INFERENCE)
    head, last = vectors(new.values[:7], 13), vectors(new.values[7:], 20)
    pool = open_pool(settings, name="test-renewal-late")
    try:
        pool.wait()
        live = InferenceStage(settings)
        live.prepare(pool)
        for batch in (old, head):
            with pool.connection() as conn, conn.transaction():
                write_vectors(conn, batch)
            run_batch(live, pool, batch)
        with pool.connection() as conn, conn.transaction():
            record_replacement(conn)
            write_vectors(conn, last)
        (got,) = run_batch(live, pool, last)
    finally:
        pool.close()
    expected = offline(new, settings=settings)
    assert got.rul_hours == pytest.approx(expected.rul_hours, abs=1e-3)
    assert got.anomaly_score == pytest.approx(expected.anomaly_score, abs=1e-3)


def test_one_batch_spanning_a_replacement_splits_at_it(
    make_settings, db: psycopg.Connection[Any], lives
) -> None:
    old, new = lives
    settings = make_settings(inference=INFERENCE)
    record_replacement(db)
    first = vectors(old.values[:6], 0)
    both = asset_vectors(
        ASSET,
        np.vstack([old.values[6:], new.values[:7]]),
        [*old.times[6:], *new.times[:7]],
        first_seq=6,
    )
    last = vectors(new.values[7:], 20)
    pool = open_pool(settings, name="test-renewal-span")
    try:
        pool.wait()
        live = InferenceStage(settings)
        live.prepare(pool)
        for batch in (first, both, last):
            with pool.connection() as conn, conn.transaction():
                write_vectors(conn, batch)
        run_batch(live, pool, first)
        spanning = run_batch(live, pool, both)
        (got,) = run_batch(live, pool, last)
    finally:
        pool.close()
    # The old life's rows in the batch continue the old sequence; the new ones start afresh.
    assert spanning[5].rul_hours == pytest.approx(
        offline(old, settings=settings).rul_hours, abs=1e-3
    )
    assert spanning[-1].rul_hours == pytest.approx(
        offline(vectors(new.values[:7], 13), settings=settings).rul_hours, abs=1e-3
    )
    expected = offline(new, settings=settings)
    assert got.rul_hours == pytest.approx(expected.rul_hours, abs=1e-3)
    assert got.anomaly_score == pytest.approx(expected.anomaly_score, abs=1e-3)
