"""Conformal calibration of the quantile interval on held-out (validation) assets.

Conformalised quantile regression (Y. Romano, E. Patterson, E. Candès,
"Conformalized quantile regression", NeurIPS 2019): the conformity score of a
window is how far both bounds must move out (negative: in) for the *served*
interval to cover the truth; the offset is the finite-sample ``coverage``
quantile of the scores. "Served" matters because of the cap: serving clips
the bounds to ``[0, cap]`` and keeps ``low <= rul <= high``, so a healthy
machine (truth exactly at the cap) is covered whenever its interval reaches
the cap, and the plain score ``max(low - y, y - high)`` would count misses
that never happen and make the interval too narrow.

Done separately per band of *predicted* RUL (Mondrian conformal prediction,
V. Vovk, A. Gammerman, G. Shafer, *Algorithmic Learning in a Random World*,
2005): most windows come from healthy machines whose target sits at the
cap, and one global offset would reach its coverage there while the
degradation region, where the interval matters, fell short. The band is
chosen by the prediction, which serving knows, never by the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

MIN_BAND_WINDOWS: Final = 100
"""A band with fewer validation windows than this takes the offsets of all windows."""


@dataclass(frozen=True, slots=True)
class Offsets:
    """Hours to widen (positive) or narrow (negative) each side of the raw interval.

    Equal today (the symmetric CQR score); kept apart so an asymmetric
    calibration needs no new artifact format.
    """

    low_hours: float
    high_hours: float


@dataclass(frozen=True, slots=True)
class BandOffsets:
    """Offsets per band of predicted RUL: band ``i`` is ``edges[i-1] <= median < edges[i]``."""

    edges_hours: tuple[float, ...]
    offsets: tuple[Offsets, ...]
    windows: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.offsets) != len(self.edges_hours) + 1 or len(self.windows) != len(self.offsets):
            raise ValueError("need one offset pair and one count per band")


def conformity(
    *, low: FloatArray, median: FloatArray, high: FloatArray, target: FloatArray, cap_hours: float
) -> FloatArray:
    """Return per window the offset the served interval needs to cover it (-inf: never misses).

    ``median`` is the served RUL (clipped to ``[0, cap]``); ``low`` and
    ``high`` are the raw bounds before offsets and clipping.
    """
    need_low = np.where((target >= median) | (target >= cap_hours), -np.inf, low - target)
    need_high = np.where((target <= median) | (target <= 0.0), -np.inf, target - high)
    scores: FloatArray = np.maximum(need_low, need_high)
    return scores


def conformal_offsets(
    *,
    low: FloatArray,
    median: FloatArray,
    high: FloatArray,
    target: FloatArray,
    coverage: float,
    cap_hours: float,
) -> Offsets:
    """Return the offset that makes the served ``[low - a, high + a]`` cover ``coverage``.

    If more than ``coverage`` of the windows are covered whatever the offset,
    the raw interval is kept (offset 0).
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    n = target.size
    if n == 0:
        raise ValueError("calibration needs at least one window")
    scores = conformity(low=low, median=median, high=high, target=target, cap_hours=cap_hours)
    level = min(1.0, math.ceil((n + 1) * coverage) / n)
    quantile = float(np.quantile(scores, level, method="higher"))
    offset = quantile if math.isfinite(quantile) else 0.0
    return Offsets(low_hours=offset, high_hours=offset)


def band_offsets(
    *,
    low: FloatArray,
    median: FloatArray,
    high: FloatArray,
    target: FloatArray,
    coverage: float,
    cap_hours: float,
    edges_hours: Sequence[float],
) -> BandOffsets:
    """Return conformal offsets per band of the served RUL (see the module docstring)."""
    edges = tuple(float(e) for e in edges_hours)
    if list(edges) != sorted(set(edges)):
        raise ValueError(f"band edges must increase strictly, got {edges}")

    def fit(rows: npt.NDArray[np.bool_]) -> Offsets:
        return conformal_offsets(
            low=low[rows],
            median=median[rows],
            high=high[rows],
            target=target[rows],
            coverage=coverage,
            cap_hours=cap_hours,
        )

    overall = fit(np.ones(target.size, dtype=bool))
    band = np.searchsorted(np.asarray(edges), median, side="right")
    offsets = []
    counts = []
    for index in range(len(edges) + 1):
        rows = band == index
        counts.append(int(rows.sum()))
        offsets.append(overall if rows.sum() < MIN_BAND_WINDOWS else fit(rows))
    return BandOffsets(edges_hours=edges, offsets=tuple(offsets), windows=tuple(counts))
