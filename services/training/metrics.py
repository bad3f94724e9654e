"""Score RUL predictions: error, the PHM08 score, α-λ accuracy, horizon, interval coverage.

Pure numpy. Definitions (and why) are in docs/model.md; the two prognostics
metrics follow A. Saxena, J. Celaya, B. Saha, S. Saha, K. Goebel, "Metrics for
offline evaluation of prognostic performance", *International Journal of
Prognostics and Health Management* 1 (2010); the asymmetric score is the one of
the PHM 2008 data challenge (A. Saxena, K. Goebel, D. Simon, N. Eklund,
"Damage propagation modeling for aircraft engine run-to-failure simulation",
PHM 2008).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

ALPHA: Final = 0.2
"""Relative half-width of the α-λ accuracy cone."""
LAMBDAS: Final = (0.25, 0.5, 0.75)
"""Where α-λ accuracy is checked, as shares of the time from first prognosis to failure."""
HORIZON_ALPHA: Final = 0.05
"""Half-width of the prognostic-horizon band as a share of the asset's life."""


def phm08_score(predicted: FloatArray, true: FloatArray) -> float:
    """Return the PHM08 score: sum of ``exp(-d/13) - 1`` (early) or ``exp(d/10) - 1`` (late).

    ``d = predicted - true``: a late prediction (d > 0, the machine fails
    before we said) costs more than an early one of the same size.
    """
    d = np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sum(np.where(d < 0, np.expm1(-d / 13.0), np.expm1(d / 10.0))))


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class AssetTrack:
    """One failing asset's predictions over its running windows, in time order."""

    asset_id: str
    true_rul: FloatArray  # uncapped, hours
    rul: FloatArray
    life_hours: float  # operating hours from the first window to failure


def alpha_lambda(tracks: Sequence[AssetTrack], cap_hours: float) -> dict[str, float]:
    """Return α-λ accuracy: the share of assets within ``(1 ± α)`` of the true RUL at each λ.

    Prognosis starts at the first window whose true RUL is at most the cap
    (before that the target is the cap itself); ``t_λ = t_start + λ (t_EoL -
    t_start)`` in remaining hours, i.e. the window whose true RUL is closest to
    ``(1 - λ) × RUL_start``.
    """
    result: dict[str, float] = {}
    for lam in LAMBDAS:
        hits = []
        for track in tracks:
            inside = np.flatnonzero(track.true_rul <= cap_hours)
            if inside.size == 0:
                continue
            start = track.true_rul[inside[0]]
            at = inside[np.argmin(np.abs(track.true_rul[inside] - (1 - lam) * start))]
            true = track.true_rul[at]
            hits.append(abs(track.rul[at] - true) <= ALPHA * true)
        result[f"{lam:g}"] = float(np.mean(hits)) if hits else float("nan")
    return result


def alpha_share(tracks: Sequence[AssetTrack], cap_hours: float) -> float:
    """Return the share of windows with true RUL ≤ cap whose prediction is within ± α·true."""
    hits = []
    for track in tracks:
        inside = track.true_rul <= cap_hours
        hits.append(
            np.abs(track.rul[inside] - track.true_rul[inside]) <= ALPHA * track.true_rul[inside]
        )
    flat = np.concatenate(hits) if hits else np.empty(0, dtype=bool)
    return float(flat.mean()) if flat.size else float("nan")


def prognostic_horizon(track: AssetTrack) -> float:
    """Return the true RUL from which every later prediction stays within ± α_PH·life of it.

    0 when even the last prediction is outside the band.
    """
    band = HORIZON_ALPHA * track.life_hours
    outside = np.flatnonzero(np.abs(track.rul - track.true_rul) > band)
    if outside.size == 0:
        return float(track.true_rul[0])
    first_good = int(outside[-1]) + 1
    return float(track.true_rul[first_good]) if first_good < track.true_rul.size else 0.0


def jitter(tracks: Sequence[AssetTrack], cap_hours: float) -> float:
    """Return the RMS change of the error from one window to the next, over failing assets.

    What makes alerts flap: a prediction that jumps around the truth crosses
    thresholds back and forth even when its average error is small.
    """
    steps = [np.diff(t.rul - np.minimum(t.true_rul, cap_hours)) for t in tracks]
    flat = np.concatenate(steps) if steps else np.empty(0)
    return float(np.sqrt(np.mean(flat**2))) if flat.size else float("nan")


@dataclass(frozen=True, slots=True, kw_only=True)
class Scores:
    """Every metric of one model on one set of assets."""

    rmse: float
    mae: float
    rmse_below_cap: float
    phm08: float
    phm08_mean: float
    alpha_accuracy: float
    alpha_lambda: dict[str, float]
    horizon_mean_hours: float
    horizon_median_hours: float
    jitter_hours: float
    coverage: float
    coverage_below_cap: float
    mean_width_hours: float
    windows: int

    def as_dict(self) -> dict[str, float | int | dict[str, float]]:
        """Return the scores as JSON-ready data."""
        return {
            "rmse": self.rmse,
            "mae": self.mae,
            "rmse_below_cap": self.rmse_below_cap,
            "phm08": self.phm08,
            "phm08_mean": self.phm08_mean,
            "alpha_accuracy": self.alpha_accuracy,
            "alpha_lambda": self.alpha_lambda,
            "horizon_mean_hours": self.horizon_mean_hours,
            "horizon_median_hours": self.horizon_median_hours,
            "jitter_hours": self.jitter_hours,
            "coverage": self.coverage,
            "coverage_below_cap": self.coverage_below_cap,
            "mean_width_hours": self.mean_width_hours,
            "windows": self.windows,
        }


def score(
    *,
    target: FloatArray,
    rul: FloatArray,
    low: FloatArray,
    high: FloatArray,
    tracks: Sequence[AssetTrack],
    cap_hours: float,
) -> Scores:
    """Return every metric; ``target`` is the capped true RUL of the same windows as ``rul``."""
    error = rul - target
    below = target < cap_hours
    covered = (low <= target) & (target <= high)
    horizons = np.array([prognostic_horizon(track) for track in tracks])
    return Scores(
        rmse=float(np.sqrt(np.mean(error**2))),
        mae=float(np.mean(np.abs(error))),
        rmse_below_cap=float(np.sqrt(np.mean(error[below] ** 2))) if below.any() else float("nan"),
        phm08=phm08_score(rul, target),
        phm08_mean=phm08_score(rul, target) / max(target.size, 1),
        alpha_accuracy=alpha_share(tracks, cap_hours),
        alpha_lambda=alpha_lambda(tracks, cap_hours),
        horizon_mean_hours=float(horizons.mean()) if horizons.size else float("nan"),
        horizon_median_hours=float(np.median(horizons)) if horizons.size else float("nan"),
        jitter_hours=jitter(tracks, cap_hours),
        coverage=float(covered.mean()),
        coverage_below_cap=float(covered[below].mean()) if below.any() else float("nan"),
        mean_width_hours=float(np.mean(high - low)),
        windows=int(target.size),
    )
