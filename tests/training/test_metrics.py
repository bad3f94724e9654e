"""Tests of the evaluation metrics and the conformal calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.training.calibration import band_offsets, conformal_offsets, conformity
from services.training.metrics import (
    AssetTrack,
    alpha_lambda,
    alpha_share,
    jitter,
    phm08_score,
    prognostic_horizon,
    score,
)


def test_phm08_punishes_late_more_than_early():
    assert phm08_score(np.array([10.0]), np.array([10.0])) == 0.0
    early = phm08_score(np.array([0.0]), np.array([13.0]))
    late = phm08_score(np.array([23.0]), np.array([13.0]))
    assert early == pytest.approx(math.e - 1)
    assert late == pytest.approx(math.e - 1)
    assert phm08_score(np.array([20.0]), np.array([10.0])) > phm08_score(
        np.array([0.0]), np.array([10.0])
    )


def track(rul, true=None):
    true = np.arange(100.0, -1.0, -1.0) if true is None else true
    return AssetTrack(asset_id="a", true_rul=true, rul=np.asarray(rul, float), life_hours=100.0)


def test_perfect_predictions_score_perfectly():
    t = track(np.minimum(np.arange(100.0, -1.0, -1.0), 60.0))
    assert alpha_share([t], 60.0) == 1.0
    assert alpha_lambda([t], 60.0) == {"0.25": 1.0, "0.5": 1.0, "0.75": 1.0}
    # Prediction stays within ±5 h (5 % of 100 h life) from RUL 65 on.
    assert prognostic_horizon(t) == 65.0


def test_prognostic_horizon_is_where_predictions_stay_in_the_band():
    true = np.arange(100.0, -1.0, -1.0)
    rul = true.copy()
    rul[true == 30.0] += 10.0  # one excursion at RUL 30
    assert prognostic_horizon(track(rul, true)) == 29.0
    rul[-1] = 20.0  # even the last prediction is off
    assert prognostic_horizon(track(rul, true)) == 0.0


def test_score_counts_coverage_and_width():
    target = np.array([10.0, 20.0, 60.0, 60.0])
    rul = np.array([12.0, 15.0, 60.0, 55.0])
    low, high = rul - 3.0, rul + 3.0
    s = score(target=target, rul=rul, low=low, high=high, tracks=[], cap_hours=60.0)
    assert s.coverage == 0.5
    assert s.coverage_below_cap == 0.5
    assert s.mean_width_hours == 6.0
    assert s.rmse == pytest.approx(math.sqrt((4 + 25 + 0 + 25) / 4))
    assert math.isnan(s.horizon_mean_hours)


def test_conformal_offsets_reach_the_coverage():
    rng = np.random.default_rng(0)
    truth = rng.normal(0.0, 1.0, 20_000)
    point = np.zeros_like(truth)
    offsets = conformal_offsets(
        low=point, median=point, high=point, target=truth, coverage=0.8, cap_hours=1e9
    )
    assert offsets.low_hours == pytest.approx(1.2816, abs=0.05)
    assert offsets.high_hours == pytest.approx(1.2816, abs=0.05)
    fresh = rng.normal(0.0, 1.0, 20_000)
    covered = (point - offsets.low_hours <= fresh) & (fresh <= point + offsets.high_hours)
    assert covered.mean() == pytest.approx(0.8, abs=0.015)
    wide = conformal_offsets(
        low=point - 5, median=point, high=point + 5, target=truth, coverage=0.8, cap_hours=1e9
    )
    assert wide.low_hours < 0 and wide.high_hours < 0  # too wide: narrowed
    with pytest.raises(ValueError):
        conformal_offsets(
            low=point, median=point, high=point, target=truth, coverage=1.0, cap_hours=1e9
        )


def test_band_offsets_calibrate_each_band_of_predicted_rul():
    rng = np.random.default_rng(1)
    median = rng.uniform(0.0, 60.0, 30_000)
    # Errors grow with the prediction: one global offset would over-cover low RUL.
    truth = median + rng.normal(0.0, 1.0 + median / 10.0)
    bands = band_offsets(
        low=median,
        median=median,
        high=median,
        target=truth,
        coverage=0.8,
        cap_hours=1e9,
        edges_hours=(20.0, 40.0),
    )
    assert bands.windows == tuple(np.histogram(median, [0, 20, 40, 60])[0])
    widths = [pair.low_hours + pair.high_hours for pair in bands.offsets]
    assert widths[0] < widths[1] < widths[2]
    band = np.searchsorted([20.0, 40.0], median, side="right")
    low = median - np.array([p.low_hours for p in bands.offsets])[band]
    high = median + np.array([p.high_hours for p in bands.offsets])[band]
    for index in range(3):
        rows = band == index
        covered = (low[rows] <= truth[rows]) & (truth[rows] <= high[rows])
        assert covered.mean() == pytest.approx(0.8, abs=0.02)


def test_sparse_bands_fall_back_to_the_overall_offsets():
    median = np.concatenate([np.full(500, 10.0), np.full(5, 50.0)])
    truth = median + np.linspace(-3, 3, median.size)
    bands = band_offsets(
        low=median,
        median=median,
        high=median,
        target=truth,
        coverage=0.8,
        cap_hours=1e9,
        edges_hours=(30.0,),
    )
    overall = conformal_offsets(
        low=median, median=median, high=median, target=truth, coverage=0.8, cap_hours=1e9
    )
    assert bands.offsets[1] == overall
    with pytest.raises(ValueError, match="edges"):
        band_offsets(
            low=median,
            median=median,
            high=median,
            target=truth,
            coverage=0.8,
            cap_hours=1e9,
            edges_hours=(30.0, 30.0),
        )


def test_jitter_measures_window_to_window_error_changes():
    true = np.arange(100.0, -1.0, -1.0)
    steady = track(np.minimum(true, 60.0) + 5.0, true)  # biased but smooth
    assert jitter([steady], 60.0) == 0.0
    zigzag = track(np.minimum(true, 60.0) + np.where(np.arange(true.size) % 2, 2.0, -2.0), true)
    assert jitter([zigzag], 60.0) == pytest.approx(4.0)


def test_conformity_knows_what_serving_clips():
    cap = 60.0
    low, median, high = (
        np.array([55.0, 55.0, 20.0]),
        np.array([60.0, 58.0, 30.0]),
        np.array([61.0, 59.0, 40.0]),
    )
    target = np.array([60.0, 60.0, 50.0])
    got = conformity(low=low, median=median, high=high, target=target, cap_hours=cap)
    assert got[0] == -np.inf  # served rul is the cap: covered whatever the offset
    assert got[1] == pytest.approx(1.0)  # high must reach the cap
    assert got[2] == pytest.approx(10.0)
    everything_covered = conformal_offsets(
        low=low[:1],
        median=median[:1],
        high=high[:1],
        target=target[:1],
        coverage=0.8,
        cap_hours=cap,
    )
    assert everything_covered.low_hours == 0.0
