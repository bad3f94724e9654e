"""Tests of the severity floor: the error left when the true defect severity is known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from services.training.dataset import FleetConfig, Split, concat_tables, simulate_table
from services.training.floor import binned_mean_rmse, severity_floor


def test_a_target_that_follows_severity_leaves_almost_no_error():
    rng = np.random.default_rng(1)
    fit = rng.uniform(0.0, 1.0, 20_000)
    test = rng.uniform(0.0, 1.0, 5_000)
    rmse, bins = binned_mean_rmse(fit, 60.0 * (1 - fit), test, 60.0 * (1 - test), bins=50)
    # 50 bins of a straight line from 60 to 0: the error is the bins' width, ~0.35 h.
    assert rmse < 0.5
    assert bins == 50


def test_a_target_unrelated_to_severity_keeps_its_whole_spread():
    rng = np.random.default_rng(2)
    fit_target, test_target = rng.normal(30.0, 10.0, 20_000), rng.normal(30.0, 10.0, 5_000)
    rmse, _ = binned_mean_rmse(
        rng.uniform(0, 1, 20_000), fit_target, rng.uniform(0, 1, 5_000), test_target
    )
    assert rmse == pytest.approx(10.0, rel=0.05)


def test_zero_severity_is_its_own_bin_and_unseen_bins_fall_back_to_the_mean():
    fit = np.array([0.0, 0.0, 0.5, 0.5])
    target = np.array([60.0, 60.0, 10.0, 20.0])
    # 0.0 -> its bin's mean 60; 0.5 -> 15.
    rmse, bins = binned_mean_rmse(fit, target, np.array([0.0, 0.5]), np.array([60.0, 15.0]))
    assert rmse == 0.0
    assert bins == 2
    # Nothing fitted with a defect: every defect window gets the overall mean (37.5).
    rmse, _ = binned_mean_rmse(np.zeros(4), target, np.array([0.3]), np.array([37.5]), bins=10)
    assert rmse == 0.0


@pytest.fixture(scope="module")
def fleet():
    return simulate_table(FleetConfig(n_assets=12, seed=5, life_mean_hours=60.0))


def test_simulated_tables_carry_the_true_severity(fleet):
    assert fleet.severity is not None
    assert fleet.severity.shape == fleet.rul_hours.shape
    healthy = ~np.isfinite(fleet.rul_hours)
    assert healthy.any()
    assert (fleet.severity[healthy] == 0).all()
    failing = np.isfinite(fleet.rul_hours)
    # Severity reaches 1 at failure and grows as the end nears.
    assert fleet.severity[failing & (fleet.rul_hours == 0)].min() == pytest.approx(1.0)
    assert np.corrcoef(fleet.severity[failing], fleet.rul_hours[failing])[0, 1] < -0.5


def test_floor_is_scored_on_the_test_assets_and_beats_a_severity_blind_guess(fleet):
    assets = fleet.assets()
    split = Split(tuple(assets[:6]), tuple(assets[6:8]), tuple(assets[8:]))
    floor = severity_floor(fleet, split, cap_hours=30.0)
    assert floor is not None
    test_rows = np.concatenate([fleet.rows(a) for a in split.test])
    assert floor.test_windows == test_rows.size
    # Fitted on training and validation assets only, never on the ones it scores.
    fit_rows = np.concatenate([fleet.rows(a) for a in split.train + split.validation])
    assert floor.fitted_windows == fit_rows.size
    severity = fleet.severity
    assert severity is not None
    expected, _ = binned_mean_rmse(
        severity[fit_rows],
        np.minimum(fleet.rul_hours[fit_rows], 30.0),
        severity[test_rows],
        np.minimum(fleet.rul_hours[test_rows], 30.0),
    )
    assert floor.rmse == pytest.approx(expected)
    target = np.minimum(fleet.rul_hours[test_rows], 30.0)
    # Knowing the defect must beat predicting the mean for every window.
    assert 0 < floor.rmse < float(np.std(target))


def test_no_floor_without_ground_truth(fleet):
    other = simulate_table(FleetConfig(n_assets=2, seed=6, life_mean_hours=60.0, prefix="other"))
    assert concat_tables([fleet, other], meta={}).severity is not None
    recorded = dataclasses.replace(fleet, severity=None)  # as read from the database
    assert concat_tables([recorded, other], meta={}).severity is None
    split = Split(tuple(fleet.assets()[:6]), (), tuple(fleet.assets()[6:]))
    assert severity_floor(recorded, split, cap_hours=30.0) is None
