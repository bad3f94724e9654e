"""Training smoke tests: a tiny fleet, two epochs, a complete artifact (TensorFlow: slow)."""

from __future__ import annotations

import argparse
import io
import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from cbm.settings import FeaturesSettings, Settings
from services.inference.model import RulModel, content_version
from services.training import cli
from services.training.dataset import FleetConfig
from services.training.network import NetworkConfig
from services.training.preparation import TrainConfig, load_table, prepare_data
from services.training.train import train

pytestmark = [
    pytest.mark.slow,
    # Keras 3.15 with numpy 2 warns about its own __array__ calls.
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

TINY = TrainConfig(
    fleet=FleetConfig(n_assets=10, seed=5, life_mean_hours=60.0),
    cap_hours=30.0,
    lookback=5,
    network=NetworkConfig(max_epochs=2, units=8, dense_units=4),
)
FIXED_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    out = io.StringIO()
    result = train(
        TINY,
        models_dir=models,
        features=FeaturesSettings(),
        verbose=0,
        out=out,
        clock=lambda: FIXED_TIME,
    )
    return models, result, out.getvalue()


def test_training_writes_a_complete_artifact(trained):
    models, result, log = trained
    assert (models / "CURRENT").read_text().strip() == result.version
    folder = models / result.version
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.keras", "model.tflite"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["version"] == result.version
    assert content_version((folder / "model.tflite").read_bytes(), meta) == result.version
    for key in (
        "features",
        "feature_set_version",
        "scaler",
        "lookback",
        "rul_cap_hours",
        "pad_policy",
        "calibration",
        "data",
        "metrics",
        "created_at",
        "training",
    ):
        assert key in meta, key
    assert meta["created_at"] == FIXED_TIME.isoformat()
    assert meta["lookback"] == 5 and meta["rul_cap_hours"] == 30.0
    assert meta["data"]["seed"] == 5 and meta["data"]["n_assets"] == 10
    split = meta["data"]["split"]
    assert not set(split["train"]) & set(split["test"])
    test_metrics = meta["metrics"]["test"]
    for name in ("rmse", "mae", "phm08", "coverage", "alpha_accuracy"):
        assert math.isfinite(test_metrics[name]), name
    assert result.version in log and "epochs" in log


def test_artifact_reloads_and_litert_matches_keras(trained):
    import keras

    models, result, _ = trained
    served = RulModel.load(models)
    assert served.version == result.version
    table = load_table(TINY, FeaturesSettings())
    prepared = prepare_data(table, TINY)
    x = prepared.test.x
    keras_model = keras.models.load_model(models / result.version / "model.keras", compile=False)
    want = keras_model.predict(prepared.scaler.apply(x), verbose=0)
    got = served.raw_quantiles(x)
    np.testing.assert_allclose(got, want, atol=1e-4)
    pred = served.predict(x)
    assert (pred.low <= pred.rul).all() and (pred.rul <= pred.high).all()
    assert pred.high.max() <= 30.0


def test_same_seed_same_model_and_existing_files_are_kept(trained):
    models, first, _ = trained
    meta_before = (models / first.version / "meta.json").read_bytes()
    out = io.StringIO()
    again = train(
        TINY,
        models_dir=models,
        features=FeaturesSettings(),
        verbose=0,
        out=out,
        clock=lambda: datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert again.scores == first.scores
    assert again.version == first.version  # the creation time is not part of the version
    assert "already in" in out.getvalue()
    assert (models / first.version / "meta.json").read_bytes() == meta_before


def test_cli_registers_train_and_evaluate(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="cbm")
    cli.register(parser.add_subparsers())
    argv = [
        "train",
        "--assets",
        "10",
        "--seed",
        "5",
        "--life-mean-hours",
        "60",
        "--cap-hours",
        "30",
        "--epochs",
        "1",
        "--units",
        "8",
    ]
    args = parser.parse_args(
        [*argv, "--lookback", "5", "--models-dir", str(tmp_path), "--progress", "0"]
    )
    assert args.handler is cli.run_train
    assert args.handler(Settings(), args) == 0
    first = (tmp_path / "CURRENT").read_text()  # no CURRENT yet: the first model goes live
    args = parser.parse_args(
        [*argv, "--lookback", "3", "--models-dir", str(tmp_path), "--progress", "0"]
    )
    assert args.handler(Settings(), args) == 0
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("m-")]) == 2
    assert (tmp_path / "CURRENT").read_text() == first  # not promoted without --promote
    args = parser.parse_args(
        ["evaluate", "--models-dir", str(tmp_path), "--report-dir", str(tmp_path / "reports")]
    )
    assert args.handler is cli.run_evaluate
    assert args.handler(Settings(), args) == 0
    reports = sorted(p.suffix for p in (tmp_path / "reports").iterdir())
    assert reports == [".json", ".png"]
    report = json.loads(next((tmp_path / "reports").glob("*.json")).read_text())
    assert set(report["scores"]) == {"lstm", "shortcut", "linear"}
    assert "rmse_vs_shortcut" in report["goals"]
    # A simulated fleet knows its true severity, so the report says how far any model could go.
    floor = report["floor"]
    assert floor["test_windows"] == report["test_windows"]
    assert 0 < floor["rmse"] < 30.0
    shortcut_rmse = report["scores"]["shortcut"]["rmse"]
    assert report["goals"]["floor_vs_shortcut"] == pytest.approx(floor["rmse"] / shortcut_rmse)
    assert "floor" in capsys.readouterr().out
