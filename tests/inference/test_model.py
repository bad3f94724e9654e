"""Tests of the serving side of the RUL model: sequences, columns, LiteRT predictions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cbm.errors import ModelError
from services.features.columns import FEATURE_INDEX, FEATURE_NAMES
from services.inference.model import (
    FeatureSpec,
    RulModel,
    build_sequences,
    current_version,
    pad_history,
    quantiles_to_prediction,
    select_features,
    standardize,
)

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_build_sequences_left_pads_with_the_first_vector():
    matrix = np.arange(12, dtype=float).reshape(4, 3)  # rows 0..3
    seqs = build_sequences(matrix, 3)
    assert seqs.shape == (4, 3, 3)
    np.testing.assert_array_equal(seqs[0], matrix[[0, 0, 0]])
    np.testing.assert_array_equal(seqs[1], matrix[[0, 0, 1]])
    np.testing.assert_array_equal(seqs[2], matrix[[0, 1, 2]])
    np.testing.assert_array_equal(seqs[3], matrix[[1, 2, 3]])


def test_build_sequences_edge_cases():
    assert build_sequences(np.empty((0, 2)), 5).shape == (0, 5, 2)
    np.testing.assert_array_equal(build_sequences(np.ones((2, 2)), 1)[:, 0], np.ones((2, 2)))
    with pytest.raises(ValueError, match="lookback"):
        build_sequences(np.ones((2, 2)), 0)
    with pytest.raises(ValueError, match="matrix"):
        build_sequences(np.ones(3), 2)


def test_pad_history_is_the_last_sequence():
    matrix = np.random.default_rng(0).standard_normal((7, 4))
    for t in range(1, 8):
        np.testing.assert_array_equal(pad_history(matrix[:t], 5), build_sequences(matrix, 5)[t - 1])


def test_select_features_picks_and_transforms_columns():
    values = np.full((2, len(FEATURE_NAMES)), np.nan)
    values[:, FEATURE_INDEX["rms"]] = [0.1, 1.0]
    values[:, FEATURE_INDEX["kurtosis"]] = [0.0, -1.5]
    values[:, FEATURE_INDEX["skewness"]] = [0.3, -0.2]
    specs = [
        FeatureSpec("skewness", "x"),
        FeatureSpec("rms", "log(x)"),
        FeatureSpec("kurtosis", "log(x+3)"),
    ]
    got = select_features(values, specs)
    np.testing.assert_allclose(got, [[0.3, np.log(0.1), np.log(3.0)], [-0.2, 0.0, np.log(1.5)]])
    with pytest.raises(ValueError, match="values must be"):
        select_features(values[:, :5], specs)
    with pytest.raises(ModelError):
        FeatureSpec("no_such_column", "x")
    with pytest.raises(ModelError):
        FeatureSpec("rms", "sqrt(x)")


def test_standardize_sets_missing_values_to_the_mean():
    x = np.array([[[1.0, np.nan], [3.0, np.inf]]])
    got = standardize(x, np.array([1.0, 0.0]), np.array([2.0, 1.0]))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [[[0.0, 0.0], [1.0, 0.0]]])


def test_quantiles_are_sorted_calibrated_and_clipped():
    model = RulModel.load(MODELS)
    meta = model.meta
    raw = np.array([[0.5, 0.4, 0.6], [-0.2, 0.1, 1.5], [0.9, 0.95, 1.0]])
    pred = quantiles_to_prediction(raw, meta)
    cap = meta.cap_hours
    assert pred.rul[0] == pytest.approx(0.5 * cap)
    assert (pred.low <= pred.rul).all() and (pred.rul <= pred.high).all()
    assert (pred.low >= 0).all() and (pred.high <= cap).all()
    assert pred.high[1] == cap


@pytest.fixture(scope="module")
def default_model() -> RulModel:
    return RulModel.load(MODELS)


def test_committed_model_loads_from_current(default_model):
    assert default_model.version == current_version(MODELS)
    assert default_model.version.startswith("m-") and len(default_model.version) == 12
    assert default_model.lookback == default_model.meta.document["lookback"]
    assert set(default_model.feature_names) <= set(FEATURE_NAMES)
    assert (MODELS / default_model.version / "model.tflite").stat().st_size < 1_000_000


def test_serving_does_not_import_tensorflow():
    # In a fresh process: other tests in this session may have imported TensorFlow.
    code = (
        "import sys, numpy as np\n"
        "from services.inference.model import RulModel\n"
        f"m = RulModel.load({str(MODELS)!r})\n"
        "m.predict(np.zeros((2, m.lookback, len(m.feature_names))))\n"
        "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_batched_predict_equals_one_by_one(default_model):
    rng = np.random.default_rng(3)
    n, f = default_model.lookback, len(default_model.feature_names)
    meta = default_model.meta
    seqs = meta.scaler_mean + meta.scaler_std * rng.standard_normal((25, n, f))
    batched = default_model.predict(seqs)
    single = [default_model.predict(seqs[i : i + 1]) for i in range(len(seqs))]
    np.testing.assert_allclose(batched.rul, [p.rul[0] for p in single], atol=1e-4)
    np.testing.assert_allclose(batched.low, [p.low[0] for p in single], atol=1e-4)
    np.testing.assert_allclose(batched.high, [p.high[0] for p in single], atol=1e-4)
    assert default_model.predict(np.empty((0, n, f))).rul.shape == (0,)
    with pytest.raises(ValueError, match="sequences must be"):
        default_model.predict(np.zeros((2, n + 1, f)))


def test_committed_model_sees_a_failure_coming(default_model):
    from datetime import UTC, datetime

    from services.simulator.physics import AssetSpec, simulate_fleet
    from services.training.dataset import featurize

    spec = AssetSpec(
        asset_id="probe-001",
        fault_mode="outer",
        life_hours=150.0,
        onset_fraction=0.4,
        mean_run_hours=1e6,
        mean_off_hours=1.0,
    )
    windows = list(simulate_fleet([spec], seed=99, start=datetime(2025, 1, 1, tzinfo=UTC)))
    table = featurize(windows, [spec])
    rows = table.rows("probe-001")
    seqs = build_sequences(default_model.select(table.values[rows]), default_model.lookback)
    pred = default_model.predict(seqs)
    early = pred.rul[: len(rows) // 3].mean()
    late = pred.rul[-10:].mean()
    assert early > default_model.cap_hours * 0.7
    assert late < 20.0
    assert late < early


def test_a_tampered_artifact_is_refused(tmp_path, default_model):
    version = default_model.version
    shutil.copytree(MODELS / version, tmp_path / version)
    (tmp_path / "CURRENT").write_text(version + "\n")
    assert RulModel.load(tmp_path).version == version
    meta_path = tmp_path / version / "meta.json"
    doc = json.loads(meta_path.read_text())
    doc["calibration"]["offset_high_hours"][0] += 1.0
    meta_path.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="hash"):
        RulModel.load(tmp_path)
    with pytest.raises(ModelError, match="cannot read"):
        RulModel.load(tmp_path, "m-0000000000")
