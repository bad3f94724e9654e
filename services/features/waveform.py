"""Batched time-domain statistics and data-quality flags of vibration windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

RealArray = NDArray[np.floating]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# A window whose standard deviation is below this share of its offset (plus a
# tiny absolute floor) is a stuck sensor: real accelerometer noise sits orders
# of magnitude above 1e-6 of full scale.
FLAT_RELATIVE_TOLERANCE = 1e-6
FLAT_ABSOLUTE_TOLERANCE = 1e-12


@dataclass(frozen=True, slots=True, eq=False)
class Centred:
    """A batch with its offset removed, ready for moments and FFTs.

    ``signal`` is each window minus its mean over finite samples, in the
    input's precision, with non-finite samples (and whole flat windows) set
    to 0. The per-window figures are float64.
    """

    signal: RealArray
    finite: BoolArray
    all_finite: bool
    count: FloatArray
    mean: FloatArray
    variance: FloatArray
    has_data: BoolArray
    flat: BoolArray


@dataclass(frozen=True, slots=True, eq=False)
class Waveform:
    """Time-domain view of a batch: the centred signal and per-window columns.

    ``columns`` maps feature names to ``(B,)`` float64 arrays.
    """

    centred: Centred
    columns: dict[str, FloatArray]


def _row_dot(a: RealArray, b: RealArray) -> FloatArray:
    """Return the row-wise dot product of two ``(B, n)`` arrays as float64."""
    dot: FloatArray = np.einsum("ij,ij->i", a, b).astype(np.float64)
    return dot


def centre(x: RealArray) -> Centred:
    """Return the rows of ``x`` with their mean removed and stuck windows zeroed.

    Only finite samples count towards the mean and variance; the others are
    replaced by the mean (0 after centring), which adds no spectral content.
    """
    n_rows, n = x.shape
    finite = np.isfinite(x)
    all_finite = bool(finite.all())
    count = np.full(n_rows, float(n)) if all_finite else finite.sum(axis=1).astype(np.float64)
    has_data = count > 0
    safe_count = np.where(has_data, count, 1.0)
    x_clean = x if all_finite else np.where(finite, x, 0)
    mean = x_clean.sum(axis=1, dtype=np.float64) / safe_count
    signal = x_clean - mean.astype(x.dtype)[:, None]
    if not all_finite:
        signal[~finite] = 0
    variance = _row_dot(signal, signal) / safe_count
    flat = has_data & (
        np.sqrt(variance) <= FLAT_RELATIVE_TOLERANCE * np.abs(mean) + FLAT_ABSOLUTE_TOLERANCE
    )
    if flat.any():
        # Rounding noise of a constant window is not a signal: make it exactly zero.
        signal[flat] = 0
        variance[flat] = 0.0
    return Centred(
        signal=signal,
        finite=finite,
        all_finite=all_finite,
        count=count,
        mean=mean,
        variance=variance,
        has_data=has_data,
        flat=flat,
    )


def _plateau_members(at_extreme: BoolArray) -> BoolArray:
    """Return which samples sit at the extreme next to an equal neighbour."""
    pair = at_extreme[:, :-1] & at_extreme[:, 1:]
    member = np.zeros_like(at_extreme)
    member[:, :-1] |= pair
    member[:, 1:] |= pair
    return member


def _clipping_share(c: Centred, d_max: RealArray, d_min: RealArray) -> FloatArray:
    """Return the share of finite samples in runs of two or more at the window's max or min."""
    d = c.signal
    at_max = d == d_max[:, None]
    at_min = d == d_min[:, None]
    if not c.all_finite:
        at_max &= c.finite
        at_min &= c.finite
    members = _plateau_members(at_max)
    members |= _plateau_members(at_min)
    share: FloatArray = members.sum(axis=1) / np.maximum(c.count, 1.0)
    return share


def analyse_waveform(x: RealArray) -> Waveform:
    """Return moments, shape ratios and quality flags of every row of ``x``.

    Moments are central (the mean is removed first) because a DC offset
    (sensor bias, gravity on a MEMS axis) carries no bearing information and
    would swamp every ratio; the offset itself is kept as ``mean``. Only
    finite samples count. Ratios are NaN for flat or empty windows.
    """
    n_rows, n = x.shape
    c = centre(x)
    d = c.signal
    has_data = c.has_data
    safe_count = np.maximum(c.count, 1.0)
    if n == 0:
        d_max = d_min = np.zeros(n_rows, dtype=x.dtype)
    else:
        d_max, d_min = d.max(axis=1), d.min(axis=1)
    clipping = _clipping_share(c, d_max, d_min) if n >= 2 else np.zeros(n_rows)

    # One scratch buffer serves d², then |d|, then sqrt|d|: fewer big temporaries.
    scratch = np.multiply(d, d)
    m3 = _row_dot(scratch, d) / safe_count
    m4 = _row_dot(scratch, scratch) / safe_count
    np.abs(d, out=scratch)
    mean_abs = scratch.sum(axis=1, dtype=np.float64) / safe_count
    np.sqrt(scratch, out=scratch)
    mean_sqrt_abs = scratch.sum(axis=1, dtype=np.float64) / safe_count

    m2 = c.variance
    std = np.sqrt(m2)
    peak = np.maximum(np.abs(d_max), np.abs(d_min)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = {
            "crest_factor": peak / std,
            "kurtosis": m4 / (m2 * m2) - 3.0,
            "skewness": m3 / (m2 * std),
            "shape_factor": std / mean_abs,
            "impulse_factor": peak / mean_abs,
            "clearance_factor": peak / (mean_sqrt_abs * mean_sqrt_abs),
        }
    nan = np.float64(np.nan)
    ratio_ok = has_data & ~c.flat
    columns: dict[str, FloatArray] = {
        "mean": np.where(has_data, c.mean, nan),
        "rms": np.where(has_data, std, nan),
        "peak": np.where(has_data, peak, nan),
        "peak_to_peak": np.where(has_data, (d_max - d_min).astype(np.float64), nan),
    }
    columns.update({name: np.where(ratio_ok, value, nan) for name, value in ratios.items()})
    columns.update(
        {
            "sample_count": np.full(n_rows, float(n)),
            "nan_share": (n - c.count) / n if n else np.zeros(n_rows),
            "clipping_share": np.where(has_data, clipping, 0.0),
            "flat_line": c.flat.astype(np.float64),
        }
    )
    return Waveform(centred=c, columns=columns)
