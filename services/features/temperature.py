"""Batched statistics of each asset's recent temperature readings."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

SECONDS_PER_HOUR = 3600.0


def temperature_features(
    times_s: NDArray[np.floating], temps_c: NDArray[np.floating]
) -> FloatArray:
    """Return ``(B, 3)`` mean °C, standard deviation °C and slope °C/h per history row.

    ``times_s`` and ``temps_c`` are ``(B, K)``: the last ``K`` readings of
    each asset (seconds on any common clock, e.g. Unix time; pad with NaN).
    A reading counts only if both its time and its value are finite. The
    standard deviation is the population one (ddof 0); the slope is the
    ordinary least-squares line through the valid points. Fewer than two
    valid points (or all at one instant) give a NaN slope; none give all NaN.

    Raises:
        ValueError: if the arrays are not two-dimensional and of equal shape.

    """
    times = np.asarray(times_s, dtype=np.float64)
    temps = np.asarray(temps_c, dtype=np.float64)
    if times.ndim != 2 or times.shape != temps.shape:
        raise ValueError(
            "times_s and temps_c must both be (B, K) arrays of equal shape, "
            f"got {times.shape} and {temps.shape}"
        )
    valid = np.isfinite(times) & np.isfinite(temps)
    count = valid.sum(axis=1).astype(np.float64)
    safe_count = np.maximum(count, 1.0)
    t = np.where(valid, times, 0.0)
    y = np.where(valid, temps, 0.0)
    mean_t = t.sum(axis=1) / safe_count
    mean_y = y.sum(axis=1) / safe_count
    # Centre before multiplying: Unix seconds squared would lose all precision.
    dt = np.where(valid, t - mean_t[:, None], 0.0)
    dy = np.where(valid, y - mean_y[:, None], 0.0)
    var_y = (dy * dy).sum(axis=1) / safe_count
    sxx = (dt * dt).sum(axis=1)
    sxy = (dt * dy).sum(axis=1)
    slope_ok = (count >= 2) & (sxx > 0)
    out = np.full((times.shape[0], 3), np.nan)
    has_data = count > 0
    out[has_data, 0] = mean_y[has_data]
    out[has_data, 1] = np.sqrt(var_y[has_data])
    out[slope_ok, 2] = sxy[slope_ok] / sxx[slope_ok] * SECONDS_PER_HOUR
    return out
