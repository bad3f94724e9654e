"""Turn batches of vibration windows into fixed, ordered feature vectors.

The pure core of the features stage: arrays in, a ``(B, F)`` float64 matrix
out, one column per name in :data:`FEATURE_NAMES`. No I/O, no clock. The
formulas and conventions are written down in ``docs/features.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from cbm.bearing import FaultOrders
from services.features.columns import (
    BAND_COLS,
    ENV_COLS,
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    FREQ_COLS,
    QUALITY_COLUMNS,
    SPEC_COLS,
    SPECTRAL_COLS,
    STANDARD_BANDS_HZ,
    TEMPERATURE_COLUMNS,
    TIME_COLUMNS,
)
from services.features.spectrum import (
    amplitude_from_power,
    band_power,
    dominant_frequency,
    envelope_spectrum,
    hann_from_rfft,
    peak_near,
    power_spectrum,
    rfft_rows,
    search_bins,
    spectral_centroid,
)
from services.features.temperature import temperature_features
from services.features.waveform import analyse_waveform, centre

__all__ = [
    "BSF_HARMONIC",
    "DEFAULT_RELATIVE_TOLERANCE",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "FEATURE_SET_VERSION",
    "MIN_SAMPLES",
    "STANDARD_BANDS_HZ",
    "TEMPERATURE_COLUMNS",
    "WindowInput",
    "band_powers",
    "extract",
    "extract_mixed",
    "fill_temperature",
    "orders_array",
    "temperature_features",
]

FloatArray = NDArray[np.float64]

MIN_SAMPLES = 16
"""Windows shorter than this get data-quality and operating-point columns only."""

BSF_HARMONIC = 2.0
"""A ball spall hits both races, so ball-fault columns sit at 2× ball spin (CWRU's "BSF")."""

DEFAULT_RELATIVE_TOLERANCE = 0.02
"""Default search half-width as a share of the target frequency (speed and slip error)."""


def orders_array(orders: FaultOrders) -> FloatArray:
    """Return ``(4,)`` orders (BPFO, BPFI, BSF, FTF) in the layout ``extract`` expects."""
    return np.array([orders.bpfo, orders.bpfi, orders.bsf, orders.ftf])


def _as_batch(samples: npt.ArrayLike) -> NDArray[np.floating]:
    """Return ``samples`` as a float ``(B, n)`` array or raise ValueError.

    float32 stays float32 (what the edge sends; half the memory traffic of
    float64, and ample for features); everything else becomes float64.
    """
    x = np.asarray(samples)
    if x.ndim != 2:
        raise ValueError(f"samples must be a (B, n) array, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"samples must hold real numbers, got dtype {x.dtype}")
    work = np.float32 if x.dtype in (np.float16, np.float32) else np.float64
    return x.astype(work, copy=False)


def _per_window(value: npt.ArrayLike, shape: tuple[int, ...], name: str) -> FloatArray:
    """Return ``value`` broadcast to ``shape`` as float64, or raise a ValueError naming it."""
    array = np.asarray(value, dtype=np.float64)
    try:
        return np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{name} must broadcast to {shape}, got shape {array.shape}") from None


def _check_rate(sample_rate_hz: float) -> float:
    """Return the sample rate as a float or raise ValueError if it is not positive."""
    rate = float(sample_rate_hz)
    if not (np.isfinite(rate) and rate > 0):
        raise ValueError(f"sample_rate_hz must be a positive number, got {sample_rate_hz!r}")
    return rate


def fault_frequencies(shaft_hz: FloatArray, fault_orders: FloatArray) -> FloatArray:
    """Return ``(B, 4)`` BPFO, BPFI, 2×BSF, FTF in Hz; NaN where speed or order is unusable."""
    freqs = shaft_hz[:, None] * fault_orders * np.array([1.0, 1.0, BSF_HARMONIC, 1.0])
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(freqs) & (shaft_hz[:, None] > 0) & (fault_orders > 0)
    return np.where(usable, freqs, np.nan)


def extract(
    samples: NDArray[np.floating],
    *,
    sample_rate_hz: float,
    shaft_hz: npt.ArrayLike,
    fault_orders: npt.ArrayLike,
    resonance_band_hz: npt.ArrayLike,
    tolerance_hz: float | None = None,
) -> FloatArray:
    """Compute the feature matrix ``(B, len(FEATURE_NAMES))`` of a homogeneous batch.

    Args:
        samples: ``(B, n)`` windows sharing length and sample rate (any real dtype).
        sample_rate_hz: sample rate of every window.
        shaft_hz: ``(B,)`` shaft speed per window (broadcast from a scalar).
        fault_orders: ``(B, 4)`` orders BPFO, BPFI, BSF (ball spin), FTF per window,
            as from :func:`orders_array`; broadcast from ``(4,)``.
        resonance_band_hz: ``(B, 2)`` envelope band ``[lo, hi]``; broadcast from ``(2,)``.
        tolerance_hz: half-width of the search around each fault frequency;
            None means ``max(df, DEFAULT_RELATIVE_TOLERANCE · f)``.

    Bad data never raises: it yields NaN or flags (see docs/features.md). The
    temperature columns are NaN here; set them with :func:`fill_temperature`.

    Raises:
        ValueError: on wrong shapes or a non-positive sample rate or tolerance.

    """
    x = _as_batch(samples)
    rate = _check_rate(sample_rate_hz)
    if tolerance_hz is not None and not (np.isfinite(tolerance_hz) and tolerance_hz >= 0):
        raise ValueError(
            f"tolerance_hz must be None or a non-negative number, got {tolerance_hz!r}"
        )
    n_rows, n = x.shape
    shaft = _per_window(shaft_hz, (n_rows,), "shaft_hz")
    orders = _per_window(fault_orders, (n_rows, 4), "fault_orders")
    band = _per_window(resonance_band_hz, (n_rows, 2), "resonance_band_hz")

    out = np.full((n_rows, len(FEATURE_NAMES)), np.nan)
    wave = analyse_waveform(x)
    for name in QUALITY_COLUMNS:
        out[:, FEATURE_INDEX[name]] = wave.columns[name]
    with np.errstate(invalid="ignore"):
        out[:, FEATURE_INDEX["shaft_hz"]] = np.where(shaft > 0, shaft, np.nan)
    targets = fault_frequencies(shaft, orders)
    out[:, FREQ_COLS] = targets
    if n < MIN_SAMPLES or n_rows == 0:
        return out
    for name in TIME_COLUMNS:
        out[:, FEATURE_INDEX[name]] = wave.columns[name]

    df = rate / n
    plain = rfft_rows(wave.centred.signal)
    power = power_spectrum(hann_from_rfft(plain, n), n)
    out[:, BAND_COLS] = band_power(power, df, list(STANDARD_BANDS_HZ))
    out[:, FEATURE_INDEX["dominant_hz"]] = dominant_frequency(power, df)
    out[:, FEATURE_INDEX["spectral_centroid_hz"]] = spectral_centroid(power, df)

    if tolerance_hz is None:
        tolerance = np.maximum(df, DEFAULT_RELATIVE_TOLERANCE * np.nan_to_num(targets))
    else:
        tolerance = np.full(targets.shape, float(tolerance_hz))
    first, last, usable = search_bins(targets, tolerance, df, power.shape[1])
    # Fault frequencies sit low in the spectrum: only those bins need amplitudes.
    bins = int(last.max(initial=1)) + 1
    amplitude = amplitude_from_power(power[:, :bins], n)
    out[:, SPEC_COLS] = peak_near(amplitude, first, last, usable)
    envelope, band_ok = envelope_spectrum(plain, n, df, band, bins)
    env_peaks = peak_near(envelope, first, last, usable)
    env_peaks[~band_ok] = np.nan
    out[:, ENV_COLS] = env_peaks

    # All-NaN windows were zero-filled for the FFT; their spectra mean nothing.
    empty = np.flatnonzero(~wave.centred.has_data)
    out[empty[:, None], SPECTRAL_COLS] = np.nan
    return out


@dataclass(frozen=True, slots=True, eq=False)
class WindowInput:
    """One window and its asset's settings, for batches of mixed lengths and rates.

    ``fault_orders`` holds BPFO, BPFI, BSF (ball spin), FTF orders, e.g. from
    :func:`orders_array`.
    """

    samples: NDArray[np.floating]
    sample_rate_hz: float
    shaft_hz: float
    fault_orders: FloatArray
    resonance_band_hz: tuple[float, float]

    def __post_init__(self) -> None:
        """Reject shapes that cannot be a single window's inputs."""
        if np.ndim(self.samples) != 1:
            raise ValueError(f"samples must be 1-D, got shape {np.shape(self.samples)}")
        if np.shape(self.fault_orders) != (4,):
            raise ValueError(
                f"fault_orders must have shape (4,), got {np.shape(self.fault_orders)}"
            )
        if np.shape(self.resonance_band_hz) != (2,):
            raise ValueError(
                f"resonance_band_hz must have shape (2,), got {np.shape(self.resonance_band_hz)}"
            )
        _check_rate(self.sample_rate_hz)


def extract_mixed(
    windows: Sequence[WindowInput], *, tolerance_hz: float | None = None
) -> FloatArray:
    """Compute features for windows of mixed lengths and rates, rows in input order.

    Windows are grouped by ``(length, sample rate)`` and each group goes
    through :func:`extract` as one batch.
    """
    out = np.full((len(windows), len(FEATURE_NAMES)), np.nan)
    groups: dict[tuple[int, float], list[int]] = {}
    for i, window in enumerate(windows):
        key = (len(window.samples), float(window.sample_rate_hz))
        groups.setdefault(key, []).append(i)
    for (_, rate), rows in groups.items():
        members = [windows[i] for i in rows]
        out[rows] = extract(
            np.stack([np.asarray(w.samples) for w in members]),
            sample_rate_hz=rate,
            shaft_hz=np.array([w.shaft_hz for w in members], dtype=np.float64),
            fault_orders=np.stack([np.asarray(w.fault_orders, dtype=np.float64) for w in members]),
            resonance_band_hz=np.array([w.resonance_band_hz for w in members], dtype=np.float64),
            tolerance_hz=tolerance_hz,
        )
    return out


def band_powers(
    samples: NDArray[np.floating],
    *,
    sample_rate_hz: float,
    bands: Sequence[tuple[float, float]],
) -> FloatArray:
    """Return ``(B, len(bands))`` power (units²) in each ``[lo, hi)`` Hz band.

    Same spectrum and conventions as the ``band_*_power`` columns: NaN for a
    band wholly above Nyquist and for windows shorter than MIN_SAMPLES or
    without any finite sample.

    Raises:
        ValueError: on a non-(B, n) batch or a band that is not ``0 <= lo < hi``.

    """
    x = _as_batch(samples)
    rate = _check_rate(sample_rate_hz)
    band_list = [(float(lo), float(hi)) for lo, hi in bands]
    for lo, hi in band_list:
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
            raise ValueError(f"each band must satisfy 0 <= lo < hi, got ({lo}, {hi})")
    n_rows, n = x.shape
    if n < MIN_SAMPLES or n_rows == 0:
        return np.full((n_rows, len(band_list)), np.nan)
    centred = centre(x)
    power = power_spectrum(hann_from_rfft(rfft_rows(centred.signal), n), n)
    out = band_power(power, rate / n, band_list)
    out[~centred.has_data] = np.nan
    return out


def fill_temperature(features: FloatArray, temp_feats: FloatArray) -> FloatArray:
    """Return a copy of ``features`` with the temperature columns set from ``temp_feats``.

    ``temp_feats`` is the ``(B, 3)`` output of :func:`temperature_features`.

    Raises:
        ValueError: if the shapes do not line up.

    """
    if features.ndim != 2 or features.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"features must be (B, {len(FEATURE_NAMES)}), got {features.shape}")
    if temp_feats.shape != (features.shape[0], len(TEMPERATURE_COLUMNS)):
        raise ValueError(
            f"temp_feats must be ({features.shape[0]}, {len(TEMPERATURE_COLUMNS)}), "
            f"got {temp_feats.shape}"
        )
    filled = features.copy()
    filled[:, list(TEMPERATURE_COLUMNS)] = temp_feats
    return filled
