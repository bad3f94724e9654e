"""Train the RUL model end to end: data, split, scaler, network, calibration, artifact.

``train(config, ...)`` is what ``cbm train`` runs. With the default config it
rebuilds the committed default model: the same fleet (seeded simulation), the
same split, the same network seed, hence the same metrics. With
``config.history`` it learns from the database's recorded lives instead
(``services.training.history``), optionally with simulated assets added.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np
import numpy.typing as npt

from cbm.errors import ModelError
from cbm.settings import FeaturesSettings
from services.inference.model import (
    FeatureSpec,
    ModelMeta,
    Prediction,
    RulModel,
)
from services.training import defaults, network
from services.training.artifact import build_meta, write_artifact
from services.training.calibration import BandOffsets, band_offsets
from services.training.dataset import (
    FeatureTable,
    FleetConfig,
    Split,
    fleet_file_table,
    simulate_table,
    split_assets,
)
from services.training.history import Connect, HistoryConfig, database_table
from services.training.metrics import AssetTrack, Scores, score
from services.training.sequences import DEFAULT_FEATURES, Scaler, SplitData, prepare

CALIBRATION_BANDS: Final = 6

_SPLITS: Final = ("train", "validation", "test")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Everything that determines a trained model."""

    fleet: FleetConfig = field(default_factory=FleetConfig)
    fleet_file: Path | None = None
    history: HistoryConfig | None = None  # set: the database's lives, not a simulation
    features: tuple[FeatureSpec, ...] = DEFAULT_FEATURES
    lookback: int = defaults.LOOKBACK
    cap_hours: float = defaults.CAP_HOURS
    coverage: float = defaults.COVERAGE
    split_seed: int = defaults.SPLIT_SEED
    network: network.NetworkConfig = field(default_factory=network.NetworkConfig)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Prepared:
    """The data of one training run, split and ready for the network."""

    table: FeatureTable
    split: Split
    train: SplitData
    validation: SplitData
    test: SplitData
    scaler: Scaler


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainResult:
    """What ``train`` made: the artifact and its scores."""

    version: str
    path: Path
    scores: Scores
    seconds: float


def load_table(
    config: TrainConfig,
    features: FeaturesSettings,
    *,
    out: TextIO | None = None,
    connect: Connect | None = None,
) -> FeatureTable:
    """Return the feature table the config describes: the database, a fleet file or a simulation.

    ``connect`` opens the database; only a config with ``history`` uses it.
    """
    started = time.perf_counter()
    if config.history is not None:
        if connect is None:
            raise ModelError("training from the database needs a connection")
        table = database_table(
            config.history,
            connect,
            cap_hours=config.cap_hours,
            fleet=config.fleet,
            features=features,
        )
    elif config.fleet_file is not None:
        table = fleet_file_table(config.fleet_file, settings=features)
    else:
        table = simulate_table(config.fleet, settings=features)
    if out is not None:
        lives = table.meta.get("lives")
        censored = (
            f"; {lives['censored']} censored lives ({lives['censored_rows']} windows) "
            f"{'partly kept' if config.history and config.history.include_censored else 'left out'}"
            if lives
            else ""
        )
        out.write(
            f"data: {len(table)} windows of {len(table.assets())} units "
            f"({int(table.running.sum())} running) in {time.perf_counter() - started:.1f} s"
            f"{censored}\n"
        )
    return table


def prepare_data(table: FeatureTable, config: TrainConfig, split: Split | None = None) -> Prepared:
    """Split ``table`` by asset, build every split's sequences and fit the scaler on train only."""
    chosen = split if split is not None else split_assets(table, seed=config.split_seed)
    parts = [
        prepare(
            table,
            ids,
            features=config.features,
            lookback=config.lookback,
            cap_hours=config.cap_hours,
        )
        for ids in (chosen.train, chosen.validation, chosen.test)
    ]
    empty = [name for name, part in zip(_SPLITS, parts, strict=True) if not len(part)]
    if empty:
        raise ModelError(
            f"no running windows in the {' and '.join(empty)} split "
            f"({len(table.machines())} machines): record more failures, add simulated assets "
            "or simulate a larger fleet"
        )
    return Prepared(
        table=table,
        split=chosen,
        train=parts[0],
        validation=parts[1],
        test=parts[2],
        scaler=Scaler.fit(parts[0]),
    )


def scaled_target(data: SplitData, cap_hours: float) -> npt.NDArray[np.float32]:
    """Return the network's target: capped RUL as a share of the cap."""
    return (data.target / cap_hours).astype(np.float32)


def band_edges(cap_hours: float) -> tuple[float, ...]:
    """Return the calibration bands' edges: six equal bands of predicted RUL below the cap."""
    return tuple(cap_hours * k / CALIBRATION_BANDS for k in range(1, CALIBRATION_BANDS))


def calibrate(
    raw_validation: npt.NDArray[np.floating[Any]],
    data: SplitData,
    cap_hours: float,
    coverage: float,
) -> BandOffsets:
    """Return conformal offsets per band from the network's validation outputs (RUL / cap)."""
    hours = np.sort(raw_validation.astype(np.float64), axis=1) * cap_hours
    return band_offsets(
        low=hours[:, 0],
        median=np.clip(hours[:, 1], 0.0, cap_hours),
        high=hours[:, 2],
        target=data.target,
        coverage=coverage,
        cap_hours=cap_hours,
        edges_hours=band_edges(cap_hours),
    )


def tracks(data: SplitData, rul: npt.NDArray[np.float64]) -> list[AssetTrack]:
    """Return the per-asset prediction tracks of the failing assets in ``data``."""
    result = []
    for asset_id in data.asset_ids:
        rows = data.asset_rows(asset_id)
        truth = data.true_rul[rows]
        if not np.isfinite(truth).all():
            continue
        result.append(
            AssetTrack(
                asset_id=asset_id,
                true_rul=truth,
                rul=rul[rows],
                life_hours=float(truth[0]),
            )
        )
    return result


def score_prediction(prediction: Prediction, data: SplitData, cap_hours: float) -> Scores:
    """Score one model's predictions on ``data``."""
    return score(
        target=data.target,
        rul=prediction.rul,
        low=prediction.low,
        high=prediction.high,
        tracks=tracks(data, prediction.rul),
        cap_hours=cap_hours,
    )


def describe_data(table: FeatureTable, split: Split, prepared: Prepared) -> dict[str, Any]:
    """Return the data section of meta.json: source, split and sizes."""
    return {
        **table.meta,
        "split": {
            "train": list(split.train),
            "validation": list(split.validation),
            "test": list(split.test),
        },
        "windows": {
            "total": len(table),
            "running": int(table.running.sum()),
            "train": len(prepared.train),
            "validation": len(prepared.validation),
            "test": len(prepared.test),
        },
    }


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


def shuffle_target(data: SplitData, seed: int) -> SplitData:
    """Return ``data`` with its targets permuted across windows: what a worse model learns from."""
    order = np.random.default_rng(seed).permutation(len(data))
    return dataclasses.replace(data, target=data.target[order], true_rul=data.true_rul[order])


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
        "data": describe_data(prepared.table, prepared.split, prepared),
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
