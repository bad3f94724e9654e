"""The features stage's pure core: windows in, one feature vector per window out.

Per batch: group windows by (length, sample rate) and extract every group in
one vectorised call; the three temperature columns come from each asset's
recent readings (state kept here, since one window's temperature says
nothing about a trend). A window whose RMS is under ``off_rms_g`` marks the
machine as off: inference then neither updates RUL nor scores anomalies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from cbm.messages import FeatureVectors, Window, to_micros
from cbm.settings import AssetsSettings, FeaturesSettings
from services.features.extract import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    WindowInput,
    extract_mixed,
    fill_temperature,
    orders_array,
    temperature_features,
)

_RMS = FEATURE_INDEX["rms"]


@dataclass
class FeaturesState:
    """Recent (event time in s, °C) readings per asset, for the temperature columns."""

    temperatures: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    # Per-asset operating point from the settings, resolved once (settings are frozen).
    operating: dict[str, tuple[float, npt.NDArray[np.float64], tuple[float, float]]] = field(
        default_factory=dict
    )


@dataclass(frozen=True, slots=True)
class FeatureBatch:
    """Feature vectors of one batch, rows in the order of the windows."""

    windows: tuple[Window, ...]
    values: npt.NDArray[np.float64]  # (B, len(FEATURE_NAMES))
    running: npt.NDArray[np.bool_]  # (B,)

    def __len__(self) -> int:
        return len(self.windows)

    def vectors(self, rows: Sequence[int] | None = None) -> FeatureVectors:
        """Return the batch (or some of its rows) as the message inference consumes."""
        index = list(range(len(self.windows))) if rows is None else list(rows)
        ws = [self.windows[i] for i in index]
        return FeatureVectors(
            feature_set=FEATURE_SET_VERSION,
            columns=FEATURE_NAMES,
            asset_ids=tuple(w.asset_id for w in ws),
            times=tuple(w.time for w in ws),
            seqs=tuple(w.seq for w in ws),
            received_at=tuple(w.received_at for w in ws),
            running=tuple(bool(self.running[i]) for i in index),
            values=self.values[np.asarray(index, dtype=np.intp)],
        )


def step(
    state: FeaturesState,
    windows: Sequence[Window],
    *,
    assets: AssetsSettings,
    settings: FeaturesSettings,
) -> tuple[FeaturesState, FeatureBatch]:
    """Compute the feature vectors of a batch and advance the temperature history."""
    if not windows:
        empty = np.empty((0, len(FEATURE_NAMES)))
        return state, FeatureBatch((), empty, np.empty(0, dtype=bool))
    inputs = []
    for w in windows:
        point = state.operating.get(w.asset_id)
        if point is None:
            asset = assets.resolve(w.asset_id)
            point = state.operating[w.asset_id] = (
                asset.shaft_hz,
                orders_array(asset.bearing.geometry().orders()),
                asset.resonance_band_hz,
            )
        shaft_hz, orders, band = point
        inputs.append(
            WindowInput(
                samples=w.samples,
                sample_rate_hz=w.sample_rate_hz,
                shaft_hz=shaft_hz,
                fault_orders=orders,
                resonance_band_hz=band,
            )
        )
    values = extract_mixed(inputs)
    times, temps = _temperature_history(state, windows, settings.temperature_history)
    values = fill_temperature(values, temperature_features(times, temps))
    rms = values[:, _RMS]
    running = np.nan_to_num(rms, nan=0.0) >= settings.off_rms_g
    return state, FeatureBatch(tuple(windows), values, running)


def _temperature_history(
    state: FeaturesState, windows: Sequence[Window], depth: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return (B, depth) times and temperatures each window sees, NaN-padded."""
    times = np.full((len(windows), depth), np.nan)
    temps = np.full((len(windows), depth), np.nan)
    for row, w in enumerate(windows):
        history = state.temperatures.get(w.asset_id)
        if history is None:
            history = state.temperatures[w.asset_id] = deque(maxlen=depth)
        if not np.isnan(w.temperature_c):
            history.append((to_micros(w.time) / 1e6, w.temperature_c))
        if history:
            points = np.asarray(history)
            times[row, -len(points) :] = points[:, 0]
            temps[row, -len(points) :] = points[:, 1]
    return times, temps


def remember_temperatures(
    state: FeaturesState, asset_id: str, readings: Sequence[tuple[datetime, float]], depth: int
) -> None:
    """Seed an asset's temperature history (after a restart, from the database)."""
    history = state.temperatures.setdefault(asset_id, deque(maxlen=depth))
    for t, value in readings:
        history.append((to_micros(t) / 1e6, value))
