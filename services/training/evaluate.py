"""Evaluate a model artifact against two baselines on held-out assets; write a report.

``cbm evaluate`` rebuilds the model's own data (the fleet and split recorded
in its meta.json), scores the shipped LiteRT model on the test assets through
the serving code, and trains and scores two baselines on the same split:

- ``shortcut``: the same LSTM, fed the *current* feature vector repeated N
  times as its sequence (the seed article's shortcut), calibrated the same way;
- ``linear``: least squares on the current (scaled) feature vector, with a
  conformal interval from its validation residuals.

On a simulated fleet it also reports the *floor*: the error of the best
predictor that knows each window's true defect severity
(``services.training.floor``), which a model that sees only the features
cannot expect to beat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np
import numpy.typing as npt

from cbm.errors import ModelError
from cbm.settings import FeaturesSettings
from services.inference.model import ModelMeta, Prediction, RulModel, quantiles_to_prediction
from services.training import network
from services.training.assessment import calibrate, scaled_target, score_prediction
from services.training.calibration import BandOffsets
from services.training.dataset import FleetConfig, Split
from services.training.floor import Floor, severity_floor
from services.training.metrics import Scores
from services.training.preparation import Prepared, TrainConfig, load_table, prepare_data
from services.training.sequences import SplitData, repeat_current

FloatArray = npt.NDArray[np.float64]

GOAL_VS_SHORTCUT: Final = 0.5
GOAL_VS_LINEAR: Final = 0.7
GOAL_COVERAGE: Final = (0.75, 0.85)
PLOTTED_ASSETS: Final = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """Scores of the model and the baselines, and where the report went."""

    version: str
    scores: dict[str, Scores]
    predictions: dict[str, Prediction]
    floor: Floor | None
    json_path: Path
    png_path: Path | None


def config_from_meta(meta: ModelMeta) -> TrainConfig:
    """Return the training config that the artifact's meta.json records."""
    doc = meta.document
    data = doc["data"]
    if str(data.get("source", "")).startswith("database"):
        raise ModelError(
            f"model {meta.version} was trained on the database's history, which keeps "
            "changing, so its data cannot be rebuilt here; its test scores are in meta.json"
        )
    net = doc["training"]["network"]
    fleet_file = Path(data["path"]) if data.get("source") == "file" else None
    fleet = (
        FleetConfig(
            n_assets=int(data["n_assets"]),
            seed=int(data["seed"]),
            life_mean_hours=float(data["life_mean_hours"]),
            healthy_share=float(data["healthy_share"]),
            hours_per_window=float(data["hours_per_window"]),
        )
        if fleet_file is None
        else FleetConfig()
    )
    return TrainConfig(
        fleet=fleet,
        fleet_file=fleet_file,
        features=meta.features,
        lookback=meta.lookback,
        cap_hours=meta.cap_hours,
        coverage=float(doc["calibration"]["coverage_target"]),
        split_seed=int(doc["training"]["split_seed"]),
        network=network.NetworkConfig(**net),
    )


def recorded_split(meta: ModelMeta) -> Split:
    """Return the asset split the model was trained with."""
    split = meta.document["data"]["split"]
    return Split(tuple(split["train"]), tuple(split["validation"]), tuple(split["test"]))


def shortcut(prepared: Prepared, config: TrainConfig, meta: ModelMeta, verbose: int) -> Prediction:
    """Train the same LSTM on repeated current vectors; return its calibrated test predictions."""
    scaler, cap = prepared.scaler, config.cap_hours
    fitted = network.fit(
        (scaler.apply(repeat_current(prepared.train)), scaled_target(prepared.train, cap)),
        (
            scaler.apply(repeat_current(prepared.validation)),
            scaled_target(prepared.validation, cap),
        ),
        config.network,
        verbose=verbose,
    )
    raw_val = network.predict(fitted.model, scaler.apply(repeat_current(prepared.validation)))
    offsets = calibrate(raw_val, prepared.validation, cap, config.coverage)
    calibrated = _with_offsets(meta, offsets)
    raw_test = network.predict(fitted.model, scaler.apply(repeat_current(prepared.test)))
    return quantiles_to_prediction(raw_test, calibrated)


def linear(prepared: Prepared, config: TrainConfig, meta: ModelMeta) -> Prediction:
    """Fit least squares on the scaled current vector; return calibrated test predictions.

    Its interval is the point prediction widened by the same banded conformal
    offsets, computed from its validation residuals.
    """
    cap = config.cap_hours

    def design(data: SplitData) -> FloatArray:
        scaled = prepared.scaler.apply(data.last_vectors[:, None, :])[:, 0, :]
        return np.column_stack([scaled.astype(np.float64), np.ones(len(data))])

    weights, *_ = np.linalg.lstsq(design(prepared.train), prepared.train.target, rcond=None)

    def as_quantiles(data: SplitData) -> FloatArray:
        point = np.clip(design(data) @ weights, 0.0, cap) / cap
        return np.repeat(point[:, None], 3, axis=1)

    offsets = calibrate(
        as_quantiles(prepared.validation), prepared.validation, cap, config.coverage
    )
    return quantiles_to_prediction(as_quantiles(prepared.test), _with_offsets(meta, offsets))


def evaluate(
    models_dir: Path,
    *,
    version: str | None,
    report_dir: Path,
    features: FeaturesSettings,
    verbose: int = 0,
    plot: bool = True,
    out: TextIO,
) -> Evaluation:
    """Score the model and both baselines on the model's test assets; write JSON and PNG."""
    model = RulModel.load(models_dir, version)
    meta = model.meta
    config = config_from_meta(meta)
    table = load_table(config, features, out=out)
    prepared = prepare_data(table, config, recorded_split(meta))
    cap = config.cap_hours
    predictions = {"lstm": model.predict(prepared.test.x)}
    out.write("training the shortcut baseline (same LSTM, current vector repeated)...\n")
    predictions["shortcut"] = shortcut(prepared, config, meta, verbose)
    predictions["linear"] = linear(prepared, config, meta)
    scores = {
        name: score_prediction(pred, prepared.test, cap) for name, pred in predictions.items()
    }
    floor = severity_floor(table, prepared.split, cap_hours=cap)
    out.write(format_table(scores, model.version, cap, floor))
    report_dir.mkdir(parents=True, exist_ok=True)
    stem = f"evaluation-{model.version}"
    json_path = report_dir / f"{stem}.json"
    json_path.write_text(
        json.dumps(report_document(model, scores, floor, prepared), indent=2, allow_nan=True)
        + "\n",
        encoding="utf-8",
    )
    png_path = None
    if plot:
        from services.training.plot import plot_tracks  # noqa: PLC0415 - matplotlib is heavy

        png_path = report_dir / f"{stem}.png"
        plot_tracks(
            png_path,
            prepared.test,
            predictions,
            cap_hours=cap,
            count=PLOTTED_ASSETS,
            title=model.version,
        )
    out.write(f"report: {json_path}{f' and {png_path}' if png_path else ''}\n")
    return Evaluation(
        version=model.version,
        scores=scores,
        predictions=predictions,
        floor=floor,
        json_path=json_path,
        png_path=png_path,
    )


def goals(scores: dict[str, Scores], floor: Floor | None) -> dict[str, Any]:
    """Return the goal checks: RMSE ratios to the baselines and the coverage band.

    With a ``floor``, also the best ratio any model could reach (the floor's
    RMSE over each baseline's) and so whether each ratio goal is reachable.
    """
    lstm = scores["lstm"]
    vs_shortcut = lstm.rmse / scores["shortcut"].rmse
    vs_linear = lstm.rmse / scores["linear"].rmse
    low, high = GOAL_COVERAGE
    reachable: dict[str, Any] = {}
    if floor is not None:
        best_shortcut = floor.rmse / scores["shortcut"].rmse
        best_linear = floor.rmse / scores["linear"].rmse
        reachable = {
            "floor_vs_shortcut": best_shortcut,
            "rmse_vs_shortcut_reachable": best_shortcut <= GOAL_VS_SHORTCUT,
            "floor_vs_linear": best_linear,
            "rmse_vs_linear_reachable": best_linear <= GOAL_VS_LINEAR,
        }
    return {
        "rmse_vs_shortcut": vs_shortcut,
        "rmse_vs_shortcut_goal": GOAL_VS_SHORTCUT,
        "rmse_vs_shortcut_met": vs_shortcut <= GOAL_VS_SHORTCUT,
        "rmse_vs_linear": vs_linear,
        "rmse_vs_linear_goal": GOAL_VS_LINEAR,
        "rmse_vs_linear_met": vs_linear <= GOAL_VS_LINEAR,
        "coverage": lstm.coverage,
        "coverage_goal": list(GOAL_COVERAGE),
        "coverage_met": low <= lstm.coverage <= high,
        **reachable,
    }


def report_document(
    model: RulModel, scores: dict[str, Scores], floor: Floor | None, prepared: Prepared
) -> dict[str, Any]:
    """Return the JSON report."""
    return {
        "model_version": model.version,
        "rul_cap_hours": model.cap_hours,
        "test_assets": list(prepared.split.test),
        "test_windows": len(prepared.test),
        "scores": {name: s.as_dict() for name, s in scores.items()},
        "floor": floor.as_dict() if floor is not None else None,
        "goals": goals(scores, floor),
    }


def format_table(
    scores: dict[str, Scores], version: str, cap_hours: float, floor: Floor | None
) -> str:
    """Return the scores as a plain-text table, one row per model."""
    header = (
        f"{'model':<9} {'RMSE h':>7} {'MAE h':>7} {'RMSE<cap':>8} {'PHM08/win':>9} "
        f"{'α-acc':>6} {'PH h':>6} {'jitter':>6} {'cover':>6} {'width h':>7}"
    )
    lines = [
        f"model {version}, RUL cap {cap_hours:g} h, test windows "
        f"{next(iter(scores.values())).windows}",
        header,
    ]
    for name, s in scores.items():
        lines.append(
            f"{name:<9} {s.rmse:>7.2f} {s.mae:>7.2f} {s.rmse_below_cap:>8.2f} "
            f"{s.phm08_mean:>9.3f} {s.alpha_accuracy:>6.1%} {s.horizon_mean_hours:>6.1f} "
            f"{s.jitter_hours:>6.2f} "
            f"{s.coverage:>6.1%} {s.mean_width_hours:>7.1f}"
        )
    check = goals(scores, floor)
    if floor is not None:
        lines.append(
            f"{'floor':<9} {floor.rmse:>7.2f}  the true defect severity known, which no model "
            f"on the features can expect to beat: {check['floor_vs_shortcut']:.2f} of "
            f"shortcut, {check['floor_vs_linear']:.2f} of linear"
        )
    lines.append(
        f"LSTM RMSE / shortcut = {check['rmse_vs_shortcut']:.2f} (goal ≤ {GOAL_VS_SHORTCUT}), "
        f"/ linear = {check['rmse_vs_linear']:.2f} (goal ≤ {GOAL_VS_LINEAR}), "
        f"coverage {check['coverage']:.1%} (goal {GOAL_COVERAGE[0]:.0%}–{GOAL_COVERAGE[1]:.0%})"
    )
    return "\n".join(lines) + "\n"


def _with_offsets(meta: ModelMeta, offsets: BandOffsets) -> ModelMeta:
    """Return ``meta`` with other calibration offsets (for a baseline's interval)."""
    return ModelMeta(
        version=meta.version,
        features=meta.features,
        lookback=meta.lookback,
        cap_hours=meta.cap_hours,
        scaler_mean=meta.scaler_mean,
        scaler_std=meta.scaler_std,
        quantiles=meta.quantiles,
        band_edges_hours=np.asarray(offsets.edges_hours, dtype=np.float64),
        offset_low_hours=np.array([pair.low_hours for pair in offsets.offsets]),
        offset_high_hours=np.array([pair.high_hours for pair in offsets.offsets]),
        document=meta.document,
    )
