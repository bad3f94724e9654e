"""Run a simulated fleet through the real features and inference cores, offline.

No broker, no database: the simulator's windows go straight into
``services.features.core.step`` (with the fleet's own asset register, as
``cbm simulate --write-assets`` would configure it) and the feature vectors
into ``services.inference.core.step`` with the served model, batch by batch in
event-time order, exactly as the live stages would see them without faults.

The evaluation axis is the simulator's operating hours (the unit RUL counts),
so lead times need no time scale. A failing asset's failure is its last
window (the simulator stops it there); healthy controls never fail.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final

from cbm.settings import AssetsSettings, FeaturesSettings, InferenceSettings
from services.features import core as features_core
from services.inference import core as inference_core
from services.prognostics.fleet import SimulatedFleet
from services.prognostics.series import AssetSeries, PredictionPoint
from services.simulator.asset import SimWindow
from services.simulator.edge import asset_register, ingested
from services.simulator.fleet import AssetSpec
from services.simulator.physics import simulate_fleet

# Windows per features/inference call: the stages' typical micro-batch.
BATCH_WINDOWS: Final = 256
SIM_START: Final = datetime(2026, 1, 1, tzinfo=UTC)


def simulate_series(
    fleet: SimulatedFleet,
    *,
    model: inference_core.Model,
    features: FeaturesSettings,
    inference: InferenceSettings,
) -> list[AssetSeries]:
    """Simulate ``fleet``, predict every window with ``model``; return one series per asset."""
    specs = fleet.specs()
    assets = AssetsSettings.model_validate({"items": asset_register(specs)})
    windows = simulate_fleet(
        specs, seed=fleet.seed, start=SIM_START, hours_per_window=fleet.hours_per_window
    )
    return predict_windows(
        windows, specs, model=model, assets=assets, features=features, inference=inference
    )


def predict_windows(
    windows: Iterable[SimWindow],
    specs: Sequence[AssetSpec],
    *,
    model: inference_core.Model,
    assets: AssetsSettings,
    features: FeaturesSettings,
    inference: InferenceSettings,
) -> list[AssetSeries]:
    """Return each asset's predictions on its operating-hours axis, with its failure."""
    rules = inference_core.Rules(
        baseline_vectors=inference.baseline_vectors, std_floor=inference.anomaly_std_floor
    )
    features_state = features_core.FeaturesState()
    inference_state = inference_core.InferenceState()
    for spec in specs:
        inference_state.assets[spec.asset_id] = inference_core.new_sequence(model.lookback, rules)
    points: dict[str, list[PredictionPoint]] = defaultdict(list)
    last: dict[str, SimWindow] = {}
    iterator = iter(windows)
    while chunk := list(itertools.islice(iterator, BATCH_WINDOWS)):
        by_key = {(w.asset_id, w.time): w for w in chunk}
        features_state, batch = features_core.step(
            features_state, [ingested(w) for w in chunk], assets=assets, settings=features
        )
        inference_state, predictions = inference_core.step(
            inference_state, batch.vectors(), model, rules
        )
        for p in predictions:
            source = by_key[(p.asset_id, p.time)]
            points[p.asset_id].append(
                PredictionPoint(
                    time=p.time,
                    hours=source.operating_hours,
                    rul_hours=p.rul_hours,
                    rul_low=p.rul_low,
                    rul_high=p.rul_high,
                    anomaly_score=p.anomaly_score,
                    running=p.running,
                )
            )
        for w in chunk:
            last[w.asset_id] = w
    series = []
    for spec in specs:
        end = last.get(spec.asset_id)
        series.append(
            AssetSeries(
                asset_id=spec.asset_id,
                points=tuple(sorted(points[spec.asset_id], key=lambda p: p.time)),
                failures=(end.operating_hours,) if end is not None and end.failed else (),
                observed_until=None if end is None else end.operating_hours,
            )
        )
    return series
