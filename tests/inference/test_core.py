"""The inference core with the committed model: sequences, off machines, late data, batching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cbm.messages import FeatureVectors
from services.features.extract import FEATURE_INDEX, FEATURE_NAMES
from services.inference import core
from services.inference.model import RulModel
from tests.support.vectors import asset_vectors

MODEL = RulModel.load(Path(__file__).resolve().parents[2] / "models")
RULES = core.Rules(baseline_vectors=3, std_floor=0.05)
T0 = datetime(2026, 12, 4, tzinfo=UTC)


def rows(
    n: int,
    *,
    asset: str = "a",
    start: int = 0,
    running: bool = True,
    scale: float = 1.0,
    seed: int = 0,
) -> FeatureVectors:
    rng = np.random.default_rng(seed)
    values = np.abs(rng.normal(1.0, 0.1, size=(n, len(FEATURE_NAMES)))) * scale
    values[:, FEATURE_INDEX["rms"]] = 0.2 * scale
    times = [T0 + timedelta(hours=start + i) for i in range(n)]
    return asset_vectors(asset, values, times, running=running)


def fresh(*assets: str) -> core.InferenceState:
    state = core.InferenceState()
    for a in assets:
        state.assets[a] = core.new_sequence(MODEL.lookback, RULES)
    return state


def test_one_prediction_per_row_with_ordered_interval() -> None:
    _, out = core.step(fresh("a"), rows(12), MODEL, RULES)
    assert len(out) == 12
    for p in out:
        assert 0 <= p.rul_low <= p.rul_hours <= p.rul_high <= MODEL.cap_hours
        assert p.model_version == MODEL.version and p.running


def test_batched_equals_one_row_at_a_time() -> None:
    batch = rows(12)
    _, together = core.step(fresh("a"), batch, MODEL, RULES)
    state = fresh("a")
    single = []
    for i in range(12):
        part = FeatureVectors(
            feature_set=batch.feature_set,
            columns=batch.columns,
            asset_ids=batch.asset_ids[i : i + 1],
            times=batch.times[i : i + 1],
            seqs=batch.seqs[i : i + 1],
            received_at=batch.received_at[i : i + 1],
            running=batch.running[i : i + 1],
            values=batch.values[i : i + 1],
        )
        state, out = core.step(state, part, MODEL, RULES)
        single.extend(out)
    np.testing.assert_allclose(
        [p.rul_hours for p in together], [p.rul_hours for p in single], atol=1e-4
    )


def test_machine_off_carries_rul_forward_without_anomaly_or_sequence_change() -> None:
    state, on = core.step(fresh("a"), rows(5), MODEL, RULES)
    before = list(state.assets["a"].recent)
    state, off = core.step(state, rows(3, start=5, running=False, scale=50.0), MODEL, RULES)
    assert [p.rul_hours for p in off] == [on[-1].rul_hours] * 3
    assert all(p.anomaly_score == 0 and not p.running for p in off)
    assert [x.tolist() for x in state.assets["a"].recent] == [x.tolist() for x in before]


def test_a_late_vector_does_not_enter_the_sequence() -> None:
    state, _ = core.step(fresh("a"), rows(6, start=10), MODEL, RULES)
    before = [x.tolist() for x in state.assets["a"].recent]
    state, late = core.step(state, rows(1, start=2), MODEL, RULES)
    assert len(late) == 1
    assert [x.tolist() for x in state.assets["a"].recent] == before


def test_anomaly_score_rises_when_the_vector_leaves_the_baseline() -> None:
    state, out = core.step(fresh("a"), rows(6, seed=1), MODEL, RULES)
    assert [p.anomaly_score for p in out[:3]] == [0.0, 0.0, 0.0]  # baseline still forming
    calm = max(p.anomaly_score for p in out[3:])
    _, shifted = core.step(state, rows(1, start=6, scale=8.0, seed=2), MODEL, RULES)
    assert shifted[0].anomaly_score > 3 * max(calm, 0.5)


def test_every_asset_must_be_known_to_the_core() -> None:
    with pytest.raises(KeyError):
        core.step(core.InferenceState(), rows(1), MODEL, RULES)
