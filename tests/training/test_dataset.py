"""Tests of the training data: asset register, features through the live core, split, scaler."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from cbm.bearing import BearingGeometry
from cbm.settings import FeaturesSettings
from services.features.core import FeaturesState, step
from services.simulator.edge import ingested
from services.simulator.physics import AssetSpec, make_fleet, simulate_fleet
from services.training.dataset import (
    FeatureTable,
    FleetConfig,
    capped_rul,
    featurize,
    fleet_assets,
    simulate_table,
    split_assets,
)
from services.training.preparation import TrainConfig, prepare_data
from services.training.sequences import (
    DEFAULT_FEATURES,
    Scaler,
    SplitData,
    prepare,
    repeat_current,
)

START = datetime(2025, 1, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def table() -> FeatureTable:
    return simulate_table(FleetConfig(n_assets=10, seed=5, life_mean_hours=60.0))


def test_fleet_assets_describe_each_spec():
    specs = [
        AssetSpec(asset_id="a-1", shaft_hz=22.0, resonance_hz=1500.0),
        AssetSpec(
            asset_id="a-2",
            resonance_hz=2000.0,
            sample_rate_hz=5000.0,
            geometry=BearingGeometry(n_balls=12, ball_diameter_mm=6.0),
        ),
    ]
    assets = fleet_assets(specs)
    first, second = assets.resolve("a-1"), assets.resolve("a-2")
    assert first.shaft_hz == 22.0 and first.sample_rate_hz == 5000.0
    assert first.resonance_band_hz == pytest.approx((1005.0, 1995.0))
    assert second.resonance_band_hz == pytest.approx((1340.0, 2500.0))  # clipped to Nyquist
    assert second.bearing.geometry() == specs[1].geometry


def test_featurize_is_the_live_features_core():
    specs = make_fleet(3, seed=2, life_mean_hours=40.0)
    windows = list(simulate_fleet(specs, seed=2, start=START, max_windows=25))
    table = featurize(windows, specs)
    state = FeaturesState()
    _, batch = step(
        state,
        [ingested(w) for w in windows],
        assets=fleet_assets(specs),
        settings=FeaturesSettings(),
    )
    np.testing.assert_array_equal(table.values, batch.values)
    np.testing.assert_array_equal(table.running, batch.running)
    assert list(table.rul_hours) == [w.rul_hours for w in windows]


def test_split_is_disjoint_and_holds_both_kinds(table):
    split = split_assets(table, seed=1, validation_share=0.2, test_share=0.2)
    parts = [set(split.train), set(split.validation), set(split.test)]
    assert set().union(*parts) == set(table.assets())
    assert sum(len(p) for p in parts) == len(table.assets())
    for part in parts:
        assert any(table.fails(a) for a in part)
    healthy = [a for a in table.assets() if not table.fails(a)]
    assert len(healthy) == 2
    assert split == split_assets(table, seed=1)


def test_targets_are_capped_and_sequences_skip_stopped_windows(table):
    cap = 30.0
    data = prepare(table, table.assets(), features=DEFAULT_FEATURES, lookback=4, cap_hours=cap)
    assert len(data) == int(table.running.sum())
    assert data.target.max() == cap
    np.testing.assert_array_equal(data.target, capped_rul(data.true_rul, cap))
    healthy = next(a for a in table.assets() if not table.fails(a))
    assert np.isinf(data.true_rul[data.asset_rows(healthy)]).all()
    assert (data.target[data.asset_rows(healthy)] == cap).all()
    np.testing.assert_array_equal(repeat_current(data)[:, 0], data.x[:, -1])


def test_scaler_is_fitted_on_training_assets_only(table):
    prepared = prepare_data(table, TrainConfig(cap_hours=30.0, lookback=4))
    train_only = prepared.train.last_vectors
    np.testing.assert_allclose(prepared.scaler.mean, train_only.mean(axis=0))
    np.testing.assert_allclose(prepared.scaler.std, train_only.std(axis=0))
    everything = np.concatenate(
        [prepared.train.last_vectors, prepared.validation.last_vectors, prepared.test.last_vectors]
    )
    assert not np.allclose(prepared.scaler.mean, everything.mean(axis=0))


def test_scaler_survives_constant_and_missing_columns():
    data = SplitData(
        x=np.zeros((3, 2, 2)),
        target=np.zeros(3),
        true_rul=np.zeros(3),
        asset_ids=("a",),
        spans=((0, 3),),
        last_vectors=np.array([[1.0, np.nan], [1.0, 2.0], [1.0, 4.0]]),
    )
    scaler = Scaler.fit(data)
    np.testing.assert_allclose(scaler.mean, [1.0, 3.0])
    np.testing.assert_allclose(scaler.std, [1.0, 1.0])
