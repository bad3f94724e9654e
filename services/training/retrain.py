"""Retrain the RUL model and promote the candidate only if it beats the live one.

``cbm retrain`` trains a candidate as ``cbm train`` does, scores it and the
model named in ``models/CURRENT`` on the same held-out assets through the
serving code, and moves ``CURRENT`` to the candidate only when it is strictly
better on the chosen metric. A rejected candidate keeps its folder, with a
``report.json`` that says why. Every decision is also a ``model_promotion``
row when the database answers; without one the decision is made all the same.

The data is a simulated fleet, or with ``--from-db`` the fleet's own history:
``feature_vector`` rows labelled by the ``maintenance_event`` failures that
end each machine's lives (``services.training.history``), optionally with
simulated assets added. A live model trained on the same database is judged
only on lives it neither trained nor validated on.

Recording the decision (the ``model_promotion`` row, the report file) is in
``services.training.promotion``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from cbm.errors import ModelError
from cbm.settings import FeaturesSettings
from services.inference.model import (
    CURRENT_FILE,
    SHADOW_FILE,
    ModelMeta,
    RulModel,
    current_version,
)
from services.training.artifact import set_current, set_pointer
from services.training.assessment import score_prediction
from services.training.dataset import FeatureTable, Split
from services.training.history import is_life_id, machine_of
from services.training.metrics import Scores
from services.training.preparation import Prepared, TrainConfig, load_table, prepare_data
from services.training.promotion import (
    Connect,
    Decision,
    Metric,
    Outcome,
    json_ready,
    record_decision,
    write_json,
)
from services.training.sequences import prepare
from services.training.train import fit_and_write

REPORT_FILE: Final = "report.json"
CONNECT_TIMEOUT_S: Final = 10
_PER_SPLIT: Final = frozenset({"split", "windows"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrainConfig:
    """One retraining run: how to train the candidate and how to judge it."""

    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    metric: Metric = Metric.RMSE
    shuffled_target: bool = False
    by: str = "unknown"
    # A winning candidate goes to models/SHADOW (runs beside the live model, no
    # alerts) instead of straight to CURRENT.
    shadow: bool = False


def decide(candidate_value: float, current_value: float | None) -> tuple[Decision, str]:
    """Return the decision and its reason: promote only a strictly lower, finite value."""
    if not math.isfinite(candidate_value):
        return Decision.REJECTED, "the candidate's score is not a number"
    if current_value is None:
        return Decision.PROMOTED, "there is no current model"
    if not math.isfinite(current_value):
        return Decision.PROMOTED, "the current model's score is not a number"
    if candidate_value < current_value:
        return Decision.PROMOTED, f"{candidate_value:.4g} is below {current_value:.4g}"
    return Decision.REJECTED, f"{candidate_value:.4g} is not below {current_value:.4g}"


def held_out_assets(split: Split, fleet: Mapping[str, Any], current: ModelMeta | None) -> list[str]:
    """Return the candidate's test assets that the current model never trained or validated on.

    Only a model trained on the same machines can have seen them. A simulated
    id means the same machine only in the very same simulated fleet (ids repeat
    across fleets, the machines behind them do not). A recorded life (``a#2``)
    is left out when the current model saw any life of machine ``a`` from the
    same database, however much history was added since.
    """
    if current is None:
        return list(split.test)
    data = current.document.get("data", {})
    if "split" not in data:
        return list(split.test)
    seen = {machine_of(asset) for asset in [*data["split"]["train"], *data["split"]["validation"]]}
    return [
        asset
        for asset in split.test
        if machine_of(asset) not in seen or _machines_of(asset, data) != _machines_of(asset, fleet)
    ]


def score_on(model: RulModel, table: FeatureTable, assets: Sequence[str]) -> Scores:
    """Score ``model`` through the serving code on ``assets``, built with its own inputs."""
    data = prepare(
        table,
        assets,
        features=model.meta.features,
        lookback=model.lookback,
        cap_hours=model.cap_hours,
    )
    return score_prediction(model.predict(data.x), data, model.cap_hours)


def fit_candidate(
    prepared: Prepared,
    config: TrainConfig,
    *,
    features: FeaturesSettings,
    shuffled_target: bool,
    models_dir: Path,
    now: datetime,
    verbose: int,
    out: TextIO,
) -> str:
    """Fit, calibrate and test a candidate on ``prepared``; write it; return the version.

    CURRENT is not touched.
    """
    fitted = fit_and_write(
        prepared,
        config,
        features=features,
        models_dir=models_dir,
        now=now,
        make_current=False,
        verbose=verbose,
        shuffled_target=shuffled_target,
    )
    out.write(
        f"candidate {fitted.version} {'written to' if fitted.created else 'already in'} "
        f"{fitted.path}: {fitted.epochs} epochs, test RMSE {fitted.scores.rmse:.2f} h"
        f"{' (trained on a shuffled target)' if shuffled_target else ''}\n"
    )
    return fitted.version


def retrain(
    config: RetrainConfig,
    *,
    models_dir: Path,
    features: FeaturesSettings,
    connect: Connect | None,
    verbose: int = 2,
    out: TextIO,
    clock: Callable[[], datetime] | None = None,
) -> Outcome:
    """Train a candidate, compare it with CURRENT on the same held-out assets, decide, record."""
    read_clock = clock if clock is not None else lambda: datetime.now(UTC)
    started = read_clock()
    models_dir = Path(models_dir)
    current = _load_current(models_dir)
    # Before any data is read: a refusal should not cost the dataset.
    if current is not None and current.cap_hours != config.train.cap_hours:
        raise ModelError(
            f"the current model {current.version} caps RUL at {current.cap_hours:g} h, the "
            f"candidate at {config.train.cap_hours:g} h: their errors are not comparable; "
            "promote by hand with `cbm train --promote`"
        )
    table = load_table(config.train, features, out=out, connect=connect)
    prepared = prepare_data(table, config.train)
    assets = held_out_assets(prepared.split, table.meta, current.meta if current else None)
    if not assets:
        raise ModelError(
            "every test asset of the candidate was seen by the current model in training; "
            "retrain on another fleet (--seed or --simulate) or once more failures are recorded"
        )
    version = fit_candidate(
        prepared,
        config.train,
        features=features,
        shuffled_target=config.shuffled_target,
        models_dir=models_dir,
        now=started,
        verbose=verbose,
        out=out,
    )
    candidate = RulModel.load(models_dir, version)
    candidate_scores = score_on(candidate, table, assets)
    current_scores = score_on(current, table, assets) if current is not None else None
    decided_at = read_clock()
    metric = config.metric
    candidate_value = metric.of(candidate_scores)
    current_value = metric.of(current_scores) if current_scores is not None else None
    itself = current is not None and current.version == version
    if itself:
        decision, reason = Decision.REJECTED, "the candidate is the current model (same content)"
    else:
        decision, reason = decide(candidate_value, current_value)
    if decision is Decision.PROMOTED and config.shadow and current is not None:
        decision, reason = Decision.SHADOWED, f"{reason}; to shadow first"
    report = json_ready(
        {
            "status": decision.value,
            "reason": f"{metric.value}: {reason}",
            "time": decided_at.isoformat(),
            "by": config.by,
            "metric": metric.value,
            "candidate": _side(version, metric, candidate_scores),
            "current": _side(current.version, metric, current_scores) if current else None,
            "held_out": {
                "assets": assets,
                "windows": candidate_scores.windows,
                "data": _fleet_of(table.meta),
                "split_seed": config.train.split_seed,
            },
            "shuffled_target": config.shuffled_target,
        }
    )
    # The live model's folder gets no "rejected" report for being retrained to itself.
    report_path = None if itself else models_dir / version / REPORT_FILE
    if report_path is not None:
        write_json(report_path, report)
    if decision is Decision.PROMOTED:
        set_current(models_dir, version)
    elif decision is Decision.SHADOWED:
        set_pointer(models_dir, SHADOW_FILE, version)
    out.write(
        f"{decision.value}: candidate {version} {metric.value} {candidate_value:.4g}, current "
        f"{current.version if current else 'none'} "
        f"{'-' if current_value is None else f'{current_value:.4g}'} on {len(assets)} held-out "
        f"assets ({candidate_scores.windows} windows); {reason}\n"
    )
    if decision is Decision.SHADOWED:
        out.write(
            f"{version} runs beside {current.version if current else 'none'} without alerting;"
            " compare with `cbm shadow status`, then `cbm shadow promote`\n"
        )
    outcome = Outcome(
        decision=decision,
        candidate=version,
        current=current.version if current else None,
        metric=metric,
        candidate_value=candidate_value,
        current_value=current_value,
        report=report,
        report_path=report_path,
        recorded=False,
    )
    recorded = record_decision(connect, outcome, decided_at, config.by)
    return dataclasses.replace(outcome, recorded=recorded)


def _load_current(models_dir: Path) -> RulModel | None:
    """Return the model named in CURRENT, or None when there is no CURRENT yet."""
    if not (models_dir / CURRENT_FILE).exists():
        return None
    return RulModel.load(models_dir, current_version(models_dir))


def _machines_of(asset: str, data: Mapping[str, Any]) -> Any:
    """Return what an asset id refers to in a data description: a database or a simulated fleet."""
    if is_life_id(asset):
        return ("database", data.get("database"))
    if str(data.get("source", "")).startswith("database"):
        return ("simulated", data.get("simulated"))
    return ("simulated", _fleet_of(data))


def _fleet_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return what identifies a fleet in a table's or a model's data description."""
    return {key: value for key, value in data.items() if key not in _PER_SPLIT}


def _side(version: str, metric: Metric, scores: Scores | None) -> dict[str, Any]:
    """Return one model's part of the report."""
    if scores is None:
        return {"version": version, "value": None, "scores": None}
    return {"version": version, "value": metric.of(scores), "scores": scores.as_dict()}
