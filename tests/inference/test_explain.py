"""Explanations: on an outer-race fault the model's top contributor is a vibration feature."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cbm.settings import AssetsSettings, FeaturesSettings
from services.features import core as features_core
from services.inference import core
from services.inference.model import RulModel
from services.simulator.edge import asset_register, ingested
from services.simulator.fleet import make_fleet
from services.simulator.physics import simulate_fleet

MODELS = Path(__file__).resolve().parents[2] / "models"
VIBRATION = {
    "env_bpfo",
    "rms",
    "peak",
    "crest_factor",
    "kurtosis",
    "clearance_factor",
    "band_100_500_power",
    "band_1000_2000_power",
    "band_2000_5000_power",
    "skewness",
    "spectral_centroid_hz",
}


def test_outer_race_fault_is_explained_by_bpfo_or_vibration_energy_not_temperature() -> None:
    model = RulModel.load(MODELS)
    specs = make_fleet(3, seed=21, life_mean_hours=120.0, healthy_share=0.0, fault_modes=["outer"])
    assert {s.fault_mode for s in specs} == {"outer"}
    assets = AssetsSettings.model_validate({"items": asset_register(specs)})
    rules = core.Rules(baseline_vectors=10, explain_top=3)
    fstate = features_core.FeaturesState()
    istate = core.InferenceState()
    for s in specs:
        istate.assets[s.asset_id] = core.new_sequence(model.lookback, rules)
    windows = simulate_fleet(specs, seed=21, start=datetime(2026, 1, 1, tzinfo=UTC))
    tops: Counter[str] = Counter()
    late = 0
    while chunk := list(itertools.islice(windows, 256)):
        fstate, batch = features_core.step(
            fstate, [ingested(w) for w in chunk], assets=assets, settings=FeaturesSettings()
        )
        istate, predictions = core.step(istate, batch.vectors(), model, rules)
        for p in predictions:
            if p.running and p.rul_hours < 30 and p.top_features:
                late += 1
                tops[p.top_features[0][0]] += 1
    assert late > 20, "too few late-life predictions carry an explanation"
    assert tops["temperature_mean_c"] < 0.1 * late, tops
    assert sum(tops[f] for f in VIBRATION) >= 0.8 * late, tops


class _Counting:
    """The same model, counting the rows it predicts; ``never_at_cap`` claims a cap no
    prediction reaches, so no row skips the occlusion."""

    def __init__(self, model: RulModel, *, never_at_cap: bool) -> None:
        self._model = model
        self._extra = 1000.0 if never_at_cap else 0.0
        self.rows = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    @property
    def cap_hours(self) -> float:
        return self._model.cap_hours + self._extra

    def predict(self, sequences: Any) -> Any:
        self.rows += len(sequences)
        return self._model.predict(sequences)


def test_skipping_predictions_at_the_cap_changes_no_explanation() -> None:
    model = RulModel.load(MODELS)
    specs = make_fleet(4, seed=8, life_mean_hours=80.0, healthy_share=0.5)
    assets = AssetsSettings.model_validate({"items": asset_register(specs)})
    rules = core.Rules(baseline_vectors=10, explain_top=3)
    batches = []
    fstate = features_core.FeaturesState()
    windows = simulate_fleet(specs, seed=8, start=datetime(2026, 1, 1, tzinfo=UTC))
    while chunk := list(itertools.islice(windows, 256)):
        fstate, batch = features_core.step(
            fstate, [ingested(w) for w in chunk], assets=assets, settings=FeaturesSettings()
        )
        batches.append(batch.vectors())
    tops, rows = {}, {}
    for name, served in (
        ("skipping", _Counting(model, never_at_cap=False)),
        ("explaining all", _Counting(model, never_at_cap=True)),
    ):
        state = core.InferenceState()
        for s in specs:
            state.assets[s.asset_id] = core.new_sequence(model.lookback, rules)
        out = []
        for vectors in batches:
            state, predictions = core.step(state, vectors, served, rules)
            out += predictions
        tops[name] = [(p.asset_id, p.time, p.top_features) for p in out]
        rows[name] = served.rows
        if name == "skipping":
            at_cap = sum(
                p.running and p.rul_hours >= model.cap_hours - core.MIN_GAIN_HOURS for p in out
            )
            explained = sum(bool(p.top_features) for p in out)
    assert at_cap > 100 and explained > 20, (at_cap, explained)
    assert tops["skipping"] == tops["explaining all"]
    # The skip is real: at-cap rows cost one model row each, not one per feature too.
    assert rows["skipping"] < rows["explaining all"] - at_cap, rows
