"""How well could any model do? The error left when the true defect severity is known.

A simulated fleet records each window's true defect severity. No feature can
know more about the defect than that, so the best predictor of the capped RUL
from severity is about as far as any model on the features can get: the rest
of the error is how fast a given unit's defect will grow, which the present
does not tell. (A model fed the last 30 hours of true severity did only
0.05 h better on the default fleet; see docs/model.md.)

``severity_floor`` estimates that predictor as the mean target per severity
bin, fitted on the training and validation assets and scored on the test
assets, like the models it is compared with. (Scored on the assets it
was fitted on, it would flatter itself: with many bins each bin learns its
own few windows.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from services.training.dataset import FeatureTable, Split, capped_rul

FloatArray = npt.NDArray[np.float64]

# Bins of positive severity with equal fitted counts. On the default fleet the
# floor is 3.37 h at 50 bins and stays within 0.03 h of that from 20 to 500.
FLOOR_BINS: Final = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class Floor:
    """The severity oracle's test error and what it was fitted on."""

    rmse: float
    bins: int
    fitted_windows: int
    test_windows: int

    def as_dict(self) -> dict[str, float | int | str]:
        """Return the floor as JSON-ready data."""
        return {
            "rmse": self.rmse,
            "bins": self.bins,
            "fitted_windows": self.fitted_windows,
            "test_windows": self.test_windows,
            "predictor": "mean capped RUL per bin of true defect severity (train+validation)",
        }


def binned_mean_rmse(
    fit_severity: FloatArray,
    fit_target: FloatArray,
    test_severity: FloatArray,
    test_target: FloatArray,
    *,
    bins: int = FLOOR_BINS,
) -> tuple[float, int]:
    """Return the test RMSE of the mean fitted target per severity bin, and the bin count.

    Severity 0 (no defect yet, or a healthy unit) is a bin of its own; the
    positive values are cut at quantiles of the fitted ones. A test window in
    a bin no fitted window fell in gets the fitted windows' overall mean.
    """
    positive = fit_severity[fit_severity > 0]
    edges = (
        np.unique(np.quantile(positive, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        if positive.size
        else np.empty(0)
    )

    def bin_of(severity: FloatArray) -> npt.NDArray[np.intp]:
        inner = np.searchsorted(edges, severity, side="right") + 1
        return np.where(severity > 0, inner, 0)

    n_bins = edges.size + 2
    fit_bins = bin_of(fit_severity)
    counts = np.bincount(fit_bins, minlength=n_bins)
    sums = np.bincount(fit_bins, weights=fit_target, minlength=n_bins)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), fit_target.mean())
    error = means[bin_of(test_severity)] - test_target
    return float(np.sqrt(np.mean(error**2))), int(np.count_nonzero(counts))


def severity_floor(
    table: FeatureTable, split: Split, *, cap_hours: float, bins: int = FLOOR_BINS
) -> Floor | None:
    """Return the severity oracle's RMSE on the test assets' running windows.

    ``None`` when the table holds no true severity (recorded history) or a
    part of the split has no running window.
    """
    if table.severity is None:
        return None
    severity = table.severity

    def windows(assets: tuple[str, ...]) -> tuple[FloatArray, FloatArray]:
        rows = [table.rows(asset_id) for asset_id in assets]
        index = np.concatenate(rows) if rows else np.empty(0, dtype=np.intp)
        return severity[index], capped_rul(table.rul_hours[index], cap_hours)

    fit_severity, fit_target = windows(split.train + split.validation)
    test_severity, test_target = windows(split.test)
    if fit_target.size == 0 or test_target.size == 0:
        return None
    rmse, used = binned_mean_rmse(fit_severity, fit_target, test_severity, test_target, bins=bins)
    return Floor(
        rmse=rmse, bins=used, fitted_windows=fit_target.size, test_windows=test_target.size
    )
