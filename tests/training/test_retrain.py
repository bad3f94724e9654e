"""``cbm retrain``: the decision rule, held-out assets, report, deciding without a database."""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import psycopg
import pytest

from cbm.settings import from_mapping
from services.inference.model import ModelMeta, RulModel, current_version
from services.training import cli
from services.training.dataset import Split
from services.training.metrics import Scores
from services.training.preparation import shuffle_target
from services.training.promotion import Decision, Metric, Outcome, json_ready, record_decision
from services.training.retrain import REPORT_FILE, decide, held_out_assets
from services.training.sequences import SplitData

MODELS = Path(__file__).resolve().parents[2] / "models"
FLEET = {
    "source": "simulated",
    "n_assets": 20,
    "seed": 5,
    "life_mean_hours": 200.0,
    "healthy_share": 0.2,
    "hours_per_window": 1.0,
    "start": "2025-01-06T00:00:00+00:00",
}
SPLIT = Split(train=("a", "b", "c"), validation=("d",), test=("e", "f"))


def meta_with(data: dict) -> ModelMeta:
    return ModelMeta.from_document({**RulModel.load(MODELS).meta.document, "data": data})


def scores(**values: float) -> Scores:
    base = dict.fromkeys(
        (
            "rmse",
            "mae",
            "rmse_below_cap",
            "phm08",
            "phm08_mean",
            "alpha_accuracy",
            "horizon_mean_hours",
            "horizon_median_hours",
            "jitter_hours",
            "coverage",
            "coverage_below_cap",
            "mean_width_hours",
        ),
        1.0,
    )
    return Scores(**{**base, **values}, alpha_lambda={"0.5": math.nan}, windows=10)


@pytest.mark.parametrize(
    ("candidate", "current", "decision"),
    [
        (3.9, 4.0, Decision.PROMOTED),
        (4.0, 4.0, Decision.REJECTED),  # equal is not better: the live model stays
        (4.1, 4.0, Decision.REJECTED),
        (3.0, None, Decision.PROMOTED),  # nothing live yet
        (math.nan, 4.0, Decision.REJECTED),
        (math.inf, None, Decision.REJECTED),
        (3.0, math.nan, Decision.PROMOTED),
    ],
)
def test_only_a_strictly_lower_finite_value_is_promoted(candidate, current, decision) -> None:
    got, reason = decide(candidate, current)
    assert got is decision
    assert reason


def test_metric_reads_its_score() -> None:
    s = scores(rmse=4.0, mae=1.5, phm08=4000.0, phm08_mean=0.25)
    assert Metric.RMSE.of(s) == 4.0
    assert Metric.MAE.of(s) == 1.5
    assert Metric.PHM08.of(s) == 0.25  # per window, so reports of different sizes read alike


def test_held_out_assets_leave_out_what_the_current_model_saw_on_the_same_fleet() -> None:
    same_fleet = {**FLEET, "split": {"train": ["e"], "validation": ["x"], "test": ["f"]}}
    assert held_out_assets(SPLIT, FLEET, meta_with(same_fleet)) == ["f"]
    other_fleet = {**same_fleet, "seed": 6}  # same ids, other machines
    assert held_out_assets(SPLIT, FLEET, meta_with(other_fleet)) == ["e", "f"]
    assert held_out_assets(SPLIT, FLEET, None) == ["e", "f"]


def test_held_out_lives_leave_out_what_a_model_of_the_same_database_saw() -> None:
    db = {"source": "database", "database": "h:5432/cbm", "rows_read": 900}
    split = Split(train=("a#1",), validation=("b#1",), test=("a#2", "c#1", "sim-001"))
    # The current model saw c#1 when the database held less; it is the same life.
    older = {
        **db,
        "rows_read": 500,
        "source": "database+simulated",
        "simulated": FLEET,
        "split": {"train": ["c#1", "sim-001"], "validation": [], "test": ["a#2"]},
    }
    now = {**db, "source": "database+simulated", "simulated": {**FLEET, "seed": 9}}
    assert held_out_assets(split, now, meta_with(older)) == ["a#2", "sim-001"]
    other_db = {**older, "database": "h:5432/elsewhere"}
    assert held_out_assets(split, now, meta_with(other_db)) == ["a#2", "c#1", "sim-001"]
    same_sim = {**now, "simulated": FLEET}
    assert held_out_assets(split, same_sim, meta_with(older)) == ["a#2"]
    # Another life of a machine the live model trained on is that machine all the same.
    trained_on_a = {**older, "split": {"train": ["a#1"], "validation": [], "test": []}}
    assert held_out_assets(split, now, meta_with(trained_on_a)) == ["c#1", "sim-001"]


def test_shuffled_target_keeps_the_inputs_and_the_values() -> None:
    target = np.arange(20.0)
    data = SplitData(
        x=np.zeros((20, 3, 2)),
        target=target,
        true_rul=target + 100,
        asset_ids=("a",),
        spans=((0, 20),),
        last_vectors=np.zeros((20, 2)),
    )
    shuffled = shuffle_target(data, seed=7)
    assert shuffled.x is data.x
    assert not np.array_equal(shuffled.target, target)
    assert sorted(shuffled.target) == sorted(target)
    np.testing.assert_array_equal(shuffled.true_rul, shuffled.target + 100)


def test_report_is_strict_json() -> None:
    ready = json_ready({"a": math.nan, "b": [1.0, math.inf, (2, "x")], "c": {"d": -math.inf}})
    assert ready == {"a": None, "b": [1.0, None, [2, "x"]], "c": {"d": None}}
    json.dumps(ready, allow_nan=False)


def test_an_unreachable_database_is_a_warning_not_a_failure(caplog) -> None:
    def refuse() -> psycopg.Connection:
        raise psycopg.OperationalError("connection refused")

    outcome = Outcome(
        decision=Decision.REJECTED,
        candidate="m-0000000001",
        current="m-0000000002",
        metric=Metric.RMSE,
        candidate_value=5.0,
        current_value=4.0,
        report={},
        report_path=None,
        recorded=False,
    )
    with caplog.at_level(logging.WARNING):
        assert record_decision(refuse, outcome, time=None, by="pytest") is False  # type: ignore[arg-type]
    assert "not recorded" in caplog.text and "connection refused" in caplog.text
    assert record_decision(None, outcome, time=None, by="pytest") is False  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_cli_rejects_a_worse_candidate_without_a_database(tmp_path, caplog, capsys) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    live = current_version(models)
    settings = from_mapping(
        {
            "database": {"url": "postgresql://127.0.0.1:1/cbm"},  # nothing listens there
            "inference": {"models_dir": str(models)},
        }
    )
    parser = argparse.ArgumentParser(prog="cbm")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            *("retrain", "--simulate", "8", "--epochs", "1", "--shuffled-target"),
            *("--by", "pytest", "--metric", "mae", "--progress", "0"),
        ]
    )
    assert args.handler is cli.run_retrain
    with caplog.at_level(logging.WARNING):
        assert args.handler(settings, args) == 0
    assert current_version(models) == live
    assert "not recorded in the database" in caplog.text
    (folder,) = [p for p in models.iterdir() if p.name.startswith("m-") and p.name != live]
    report = json.loads((folder / REPORT_FILE).read_text())
    assert report["status"] == "rejected" and report["by"] == "pytest"
    assert report["metric"] == "mae" and report["shuffled_target"] is True
    assert report["current"]["version"] == live and report["candidate"]["version"] == folder.name
    assert report["candidate"]["value"] > report["current"]["value"]
    assert report["held_out"]["assets"]
    assert RulModel.load(models, folder.name).version == folder.name  # a complete artifact
    assert "rejected: candidate" in capsys.readouterr().out
