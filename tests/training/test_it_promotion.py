"""``cbm retrain`` against the real database and a running inference stage.

A candidate trained on a shuffled target must lose to the committed model; a
normally trained one must beat a shuffled-target model made CURRENT on purpose,
and the running inference worker must then serve it. Small fleets, few epochs.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import psycopg
import pytest

from cbm.frames import encode_features
from cbm.settings import FeaturesSettings
from cbm.topics import Topics
from services.inference.model import current_version, shadow_version
from services.training.artifact import set_current
from services.training.dataset import FeatureTable, FleetConfig, simulate_table
from services.training.network import NetworkConfig
from services.training.preparation import TrainConfig
from services.training.promotion import Decision
from services.training.retrain import REPORT_FILE, RetrainConfig, retrain
from tests.support.mqtt import Publisher, eventually
from tests.support.vectors import table_vectors
from tests.support.workers import ThreadWorker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

MODELS = Path(__file__).resolve().parents[2] / "models"
# Enough to learn something in ~3 s: a shuffled target then loses by a factor of about 3.
FAST = TrainConfig(
    fleet=FleetConfig(n_assets=20, seed=5),
    network=NetworkConfig(max_epochs=3, learning_rate=1e-2, batch_size=32),
)


def promotions(db) -> list[tuple]:
    return db.execute(
        "SELECT candidate_version, current_version, metric, candidate_value, current_value,"
        " decision, decided_by, report FROM model_promotion ORDER BY id"
    ).fetchall()


def frame(table: FeatureTable, rows: list[int]) -> bytes:
    return encode_features(table_vectors(table, rows))


def test_a_worse_candidate_is_rejected_and_recorded(
    make_settings, db, tmp_path, capsys, cbm
) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    live = current_version(models)
    settings = make_settings(inference={"models_dir": str(models)})
    retrain = ("retrain", "--simulate", "12", "--epochs", "1", "--shuffled-target")
    assert cbm(settings, *retrain, "--by", "pytest", "--progress", "0") == 0

    assert current_version(models) == live
    (candidate,) = [p.name for p in models.iterdir() if p.name.startswith("m-") and p.name != live]
    report = json.loads((models / candidate / REPORT_FILE).read_text())
    assert report["status"] == "rejected"
    assert report["candidate"]["value"] > report["current"]["value"]
    (row,) = promotions(db)
    assert row[:3] == (candidate, live, "rmse")
    assert row[3] == pytest.approx(report["candidate"]["value"])
    assert row[4] == pytest.approx(report["current"]["value"])
    assert row[5:7] == ("rejected", "pytest")
    assert row[7] == report
    assert "rejected: candidate" in capsys.readouterr().out


def test_a_better_candidate_is_promoted_and_served(make_settings, db, db_url, tmp_path) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    features = FeaturesSettings()

    def connect() -> psycopg.Connection:
        return psycopg.connect(db_url, autocommit=True)

    # A deliberately bad live model: trained on a shuffled target, then made CURRENT by hand.
    bad = retrain(
        RetrainConfig(train=FAST, shuffled_target=True, by="setup"),
        models_dir=models,
        features=features,
        connect=None,
        verbose=0,
        out=io.StringIO(),
    )
    assert bad.decision is Decision.REJECTED
    set_current(models, bad.candidate)

    settings = make_settings(inference={"models_dir": str(models), "reload_check_s": 0.1})
    topic = Topics(settings.base_topic).features(0)
    fleet = simulate_table(FleetConfig(n_assets=1, seed=11), settings=features)
    rows = [int(i) for i in fleet.rows(str(fleet.asset_id[0]))]
    inference = ThreadWorker(settings, "inference")
    publisher = Publisher(settings.mqtt.host, settings.mqtt.port)
    sent = 3

    def served() -> list[tuple[str, str]]:
        return [
            (str(version), str(time))
            for version, time in db.execute(
                "SELECT model_version, time FROM prediction ORDER BY time"
            ).fetchall()
        ]

    try:
        # Resent until the worker's subscription is in place; rows are stored once each.
        eventually(
            lambda: publisher.send([(topic, frame(fleet, rows[:sent]))]) or len(served()) == sent,
            interval=0.5,
            message="predictions of the bad model",
        )
        assert {version for version, _ in served()} == {bad.candidate}

        better = retrain(
            RetrainConfig(train=FAST, by="pytest"),
            models_dir=models,
            features=features,
            connect=connect,
            verbose=0,
            out=io.StringIO(),
        )
        assert better.decision is Decision.PROMOTED, better.report["reason"]
        assert current_version(models) == better.candidate
        report = json.loads((models / better.candidate / REPORT_FILE).read_text())
        assert report["status"] == "promoted"
        assert report["current"]["version"] == bad.candidate
        (row,) = promotions(db)
        assert row[:3] == (better.candidate, bad.candidate, "rmse")
        assert row[3] < row[4]
        assert row[5:7] == ("promoted", "pytest")

        def next_vector_served_by_new_model() -> bool:
            nonlocal sent
            publisher.send([(topic, frame(fleet, [rows[sent]]))])
            sent += 1
            return any(version == better.candidate for version, _ in served())

        # At most ~70 more vectors: the fleet's one asset has well over that many.
        eventually(
            next_vector_served_by_new_model,
            timeout=20,
            interval=0.3,
            message="the promoted model",
        )
        versions = [version for version, _ in served()]
        switch = versions.index(better.candidate)
        assert set(versions[:switch]) == {bad.candidate}
        assert set(versions[switch:]) == {better.candidate}  # no way back once switched

        # Retraining to the very same model changes nothing and leaves the live folder alone.
        again = retrain(
            RetrainConfig(train=FAST, by="cron"),
            models_dir=models,
            features=features,
            connect=connect,
            verbose=0,
            out=io.StringIO(),
        )
        assert again.decision is Decision.REJECTED and again.candidate == better.candidate
        assert current_version(models) == better.candidate
        assert json.loads((models / better.candidate / REPORT_FILE).read_text()) == report
        assert [r[5:7] for r in promotions(db)] == [("promoted", "pytest"), ("rejected", "cron")]
    finally:
        publisher.close()
        inference.stop()


def test_with_shadow_a_better_candidate_runs_in_shadow_first(make_settings, db, db_url, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    features = FeaturesSettings()
    bad = retrain(
        RetrainConfig(train=FAST, shuffled_target=True, by="setup"),
        models_dir=models,
        features=features,
        connect=None,
        verbose=0,
        out=io.StringIO(),
    )
    set_current(models, bad.candidate)
    out = io.StringIO()
    better = retrain(
        RetrainConfig(train=FAST, by="pytest", shadow=True),
        models_dir=models,
        features=features,
        connect=lambda: psycopg.connect(db_url, autocommit=True),
        verbose=0,
        out=out,
    )
    assert better.decision is Decision.SHADOWED, better.report["reason"]
    assert current_version(models) == bad.candidate  # nothing goes live yet
    assert shadow_version(models) == better.candidate
    assert "cbm shadow promote" in out.getvalue()
    (row,) = promotions(db)
    assert row[:2] == (better.candidate, bad.candidate) and row[5:7] == ("shadowed", "pytest")
