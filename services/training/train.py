"""Train the RUL model end to end: data, split, scaler, network, calibration, artifact.

``train(config, ...)`` is what ``cbm train`` runs. With the default config it
rebuilds the committed default model: the same fleet (seeded simulation), the
same split, the same network seed, hence the same metrics. With
``config.history`` it learns from the database's recorded lives instead
(``services.training.history``), optionally with simulated assets added.

The data side (config, table, split, sequences) is in
``services.training.preparation``; calibrating and scoring the network's
outputs in ``services.training.assessment``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cbm.settings import FeaturesSettings
from services.inference.model import ModelMeta, RulModel
from services.training import network
from services.training.artifact import build_meta, write_artifact
from services.training.assessment import calibrate, scaled_target, score_prediction
from services.training.history import Connect
from services.training.metrics import Scores
from services.training.preparation import (
    Prepared,
    TrainConfig,
    describe_data,
    load_table,
    prepare_data,
    shuffle_target,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainResult:
    """What ``train`` made: the artifact and its scores."""

    version: str
    path: Path
    scores: Scores
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Fitted:
    """What one fit wrote: the artifact and the figures worth printing."""

    version: str
    path: Path
    created: bool
    scores: Scores
    epochs: int
    best_epoch: int
    validation_loss: float


def fit_and_write(
    prepared: Prepared,
    config: TrainConfig,
    *,
    features: FeaturesSettings,
    models_dir: Path,
    now: datetime,
    make_current: bool,
    verbose: int = 2,
    shuffled_target: bool = False,
) -> Fitted:
    """Fit, calibrate and test a network on prepared data; write its artifact.

    ``cbm train`` and ``cbm retrain`` both come here, so a candidate of the
    default config is the very version ``cbm train`` makes.
    """
    cap, scaler = config.cap_hours, prepared.scaler
    train_data = prepared.train
    if shuffled_target:
        train_data = shuffle_target(train_data, config.network.seed)
    fitted = network.fit(
        (scaler.apply(train_data.x), scaled_target(train_data, cap)),
        (scaler.apply(prepared.validation.x), scaled_target(prepared.validation, cap)),
        config.network,
        verbose=verbose,
    )
    offsets = calibrate(
        network.predict(fitted.model, scaler.apply(prepared.validation.x)),
        prepared.validation,
        cap,
        config.coverage,
    )
    tflite = network.to_litert(fitted.model, config.network)
    training: dict[str, Any] = {
        "network": config.network.describe(),
        "epochs_run": len(fitted.loss),
        "best_epoch": fitted.best_epoch,
        "loss": "pinball over quantiles 0.1, 0.5, 0.9",
        "validation_loss": min(fitted.val_loss),
        "split_seed": config.split_seed,
        "features_settings": features.model_dump(mode="json"),
    }
    if shuffled_target:
        training["target"] = "shuffled across training windows (a deliberately worse model)"
    meta_args: dict[str, Any] = {
        "features": config.features,
        "lookback": config.lookback,
        "cap_hours": cap,
        "scaler_mean": [float(v) for v in scaler.mean],
        "scaler_std": [float(v) for v in scaler.std],
        "quantiles": list(network.QUANTILES),
        "offsets": offsets,
        "coverage": config.coverage,
        "data": describe_data(prepared),
        "training": training,
        "created_at": now,
    }
    # Test scores come from the LiteRT export through the serving code: what is shipped.
    draft = build_meta(metrics={}, **meta_args)
    served = RulModel(meta=ModelMeta.from_document({"version": "draft", **draft}), tflite=tflite)
    scores = score_prediction(served.predict(prepared.test.x), prepared.test, cap)
    version, path, created = write_artifact(
        models_dir,
        tflite=tflite,
        meta=build_meta(metrics={"test": scores.as_dict()}, **meta_args),
        save_keras=lambda target: network.save_keras(fitted.model, config.network, target),
        make_current=make_current,
    )
    return Fitted(
        version=version,
        path=path,
        created=created,
        scores=scores,
        epochs=len(fitted.loss),
        best_epoch=fitted.best_epoch,
        validation_loss=min(fitted.val_loss),
    )


def train(
    config: TrainConfig,
    *,
    models_dir: Path,
    features: FeaturesSettings,
    make_current: bool = True,
    verbose: int = 2,
    out: TextIO,
    clock: Callable[[], datetime] | None = None,
    connect: Connect | None = None,
) -> TrainResult:
    """Train, calibrate, test and write a model artifact; report progress to ``out``.

    ``connect`` opens the database a config with ``history`` reads.
    """
    started = time.perf_counter()
    now = clock() if clock is not None else datetime.now(UTC)
    table = load_table(config, features, out=out, connect=connect)
    prepared = prepare_data(table, config)
    out.write(
        f"split: {len(prepared.split.train)} train / {len(prepared.split.validation)} validation"
        f" / {len(prepared.split.test)} test assets; sequences "
        f"{len(prepared.train)} / {len(prepared.validation)} / {len(prepared.test)}\n"
    )
    fitted = fit_and_write(
        prepared,
        config,
        features=features,
        models_dir=models_dir,
        now=now,
        make_current=make_current,
        verbose=verbose,
    )
    out.write(
        f"network: {fitted.epochs} epochs, best {fitted.best_epoch} "
        f"(validation pinball {fitted.validation_loss:.4f})\n"
    )
    version, path, created, scores = fitted.version, fitted.path, fitted.created, fitted.scores
    seconds = time.perf_counter() - started
    action = "written to" if created else "already in"
    out.write(
        f"model {version} {action} {path} in {seconds:.0f} s: test RMSE {scores.rmse:.2f} h, "
        f"MAE {scores.mae:.2f} h, 80 % interval coverage {scores.coverage:.1%}"
        f"{' (now CURRENT)' if make_current else ' (CURRENT unchanged)'}\n"
    )
    return TrainResult(version=version, path=path, scores=scores, seconds=seconds)
