"""Batched spectra of vibration windows: Hann amplitude, power, bands and envelope.

Every function works on a ``(B, K)`` block of one-sided spectra of ``B``
windows that share a length ``n`` and a sample rate, so one FFT call serves the
whole batch. ``K = n // 2 + 1`` and bin ``k`` sits at ``k * df`` with
``df = sample_rate / n``. Arrays keep the precision they arrive in (float32
windows give complex64 spectra, which halves memory traffic).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

RealArray = NDArray[np.floating]
ComplexArray = NDArray[np.complexfloating]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IndexArray = NDArray[np.intp]

# Slack in bin units so a target exactly on a bin edge keeps that bin despite rounding.
_EDGE_SLACK = 1e-9


def rfft_rows(x: RealArray) -> ComplexArray:
    """Return the one-sided FFT of every row of ``x`` in one call."""
    spectrum: ComplexArray = sfft.rfft(x, axis=1)
    return spectrum


def hann_from_rfft(spectrum: ComplexArray, n: int, bins: int | None = None) -> ComplexArray:
    """Return the first ``bins`` bins (default all) of the Hann-windowed signal's spectrum.

    The periodic Hann window is ``0.5 - 0.25 e^{+j2πt/n} - 0.25 e^{-j2πt/n}``,
    so windowing is a three-tap convolution across bins: cheaper than a second
    FFT, and the plain spectrum is still needed for the envelope (a windowed
    signal would put the window's own shape into the envelope).
    """
    k_count = spectrum.shape[1]
    width = k_count if bins is None else min(bins, k_count)
    head = spectrum[:, :width]
    out: ComplexArray = 0.5 * head
    out[:, 1:] -= 0.25 * head[:, :-1]
    # X[-1] = conj(X[1]); past the one-sided range X[K] = conj(X[n - K]).
    out[:, 0] -= 0.25 * np.conj(spectrum[:, 1])
    if width < k_count:
        out -= 0.25 * spectrum[:, 1 : width + 1]
    else:
        out[:, :-1] -= 0.25 * spectrum[:, 1:]
        out[:, -1] -= 0.25 * np.conj(spectrum[:, n - k_count])
    return out


def _one_sided_factor(n: int, width: int) -> FloatArray:
    """Return 2 for bins that stand for a ± pair, 1 for DC and an even-n Nyquist bin."""
    factor = np.full(width, 2.0)
    factor[0] = 1.0
    if n % 2 == 0 and width == n // 2 + 1:
        factor[-1] = 1.0
    return factor


def power_spectrum(windowed: ComplexArray, n: int) -> RealArray:
    """Return the one-sided power per bin (signal units squared) of a Hann spectrum.

    Scaled by ``n · Σw²`` so the bins sum to the mean square of a stationary
    signal (Parseval with the window's noise gain) and a sinusoid of amplitude
    ``A`` contributes ``A²/2``.
    """
    sum_w2 = 3.0 * n / 8.0
    scale = _one_sided_factor(n, windowed.shape[1]) / (n * sum_w2)
    power: RealArray = (windowed.real**2 + windowed.imag**2) * scale.astype(windowed.real.dtype)
    return power


def amplitude_from_power(power: RealArray, n: int) -> RealArray:
    """Return the one-sided peak-amplitude spectrum from :func:`power_spectrum`.

    A sinusoid of amplitude ``A`` centred on a bin reads ``A`` there
    (Hann coherent gain ``Σw = n/2`` removed).
    """
    sum_w, sum_w2 = n / 2.0, 3.0 * n / 8.0
    # |Xw| = sqrt(P · n · Σw² / factor) and amplitude = factor · |Xw| / Σw.
    scale = np.sqrt(_one_sided_factor(n, power.shape[1]) * n * sum_w2) / sum_w
    amplitude: RealArray = np.sqrt(power) * scale.astype(power.dtype)
    return amplitude


def band_power(power: RealArray, df: float, bands: list[tuple[float, float]]) -> FloatArray:
    """Return ``(B, len(bands))`` power in each ``[lo, hi)`` band; NaN if above Nyquist.

    A band that straddles Nyquist holds the part below it.
    """
    k_count = power.shape[1]
    out = np.full((power.shape[0], len(bands)), np.nan)
    for j, (lo, hi) in enumerate(bands):
        start = max(int(np.ceil(lo / df - _EDGE_SLACK)), 0)
        stop = min(int(np.ceil(hi / df - _EDGE_SLACK)), k_count)
        if start < k_count:
            out[:, j] = power[:, start:stop].sum(axis=1, dtype=np.float64)
    return out


def search_bins(
    freqs_hz: FloatArray, tolerance_hz: FloatArray, df: float, k_count: int
) -> tuple[IndexArray, IndexArray, BoolArray]:
    """Return first and last bin of each ``f ± tol`` search and whether it is usable.

    The search always holds the bin nearest ``f``, so a tolerance below half
    a bin still looks somewhere; it skips DC and is cut at Nyquist. Unusable:
    ``f`` not finite or not positive, nearest bin is DC, or the whole
    interval lies above Nyquist. Unusable entries get the dummy range [1, 1].
    """
    usable = np.isfinite(freqs_hz) & np.isfinite(tolerance_hz) & (freqs_hz > 0)
    f = np.where(usable, freqs_hz, 0.0) / df
    t = np.where(usable, tolerance_hz, 0.0) / df
    nearest = np.rint(f)
    lo = np.maximum(np.minimum(np.ceil(f - t - _EDGE_SLACK), nearest), 1.0)
    hi = np.minimum(np.maximum(np.floor(f + t + _EDGE_SLACK), nearest), k_count - 1.0)
    usable &= (nearest >= 1) & (lo <= k_count - 1)
    first = np.where(usable, lo, 1.0).astype(np.intp)
    last = np.where(usable, np.maximum(hi, lo), 1.0).astype(np.intp)
    return first, last, usable


def peak_near(
    spectrum: RealArray, first: IndexArray, last: IndexArray, usable: BoolArray
) -> FloatArray:
    """Return the largest value of each row of ``spectrum`` over bins ``first..last``.

    ``first``, ``last`` and ``usable`` are ``(B, J)`` from :func:`search_bins`;
    unusable entries are NaN.
    """
    n_rows, k_count = spectrum.shape
    width = int((last - first).max(initial=0)) + 1
    idx = first[..., None] + np.arange(width)
    inside = idx <= last[..., None]
    np.minimum(idx, k_count - 1, out=idx)
    values = np.take_along_axis(spectrum, idx.reshape(n_rows, -1), axis=1).reshape(idx.shape)
    peak: FloatArray = np.where(inside, values, -np.inf).max(axis=-1).astype(np.float64)
    peak[~usable] = np.nan
    return peak


def dominant_frequency(power: RealArray, df: float) -> FloatArray:
    """Return the frequency of the strongest non-DC bin, refined between bins.

    Fits a parabola to the log power of the peak bin and its neighbours
    (exact for a Gaussian peak and close for Hann's main lobe), which removes
    most of the ±df/2 quantisation. NaN where the spectrum is all zero.
    """
    n_rows, k_count = power.shape
    k = np.argmax(power[:, 1:], axis=1) + 1
    rows = np.arange(n_rows)
    centre = power[rows, k].astype(np.float64)
    left = power[rows, k - 1].astype(np.float64)
    right = power[rows, np.minimum(k + 1, k_count - 1)].astype(np.float64)
    offset = np.zeros(n_rows)
    fit = (k < k_count - 1) & (left > 0) & (centre > 0) & (right > 0)
    if fit.any():
        a, b, c = np.log(left[fit]), np.log(centre[fit]), np.log(right[fit])
        curvature = a - 2.0 * b + c
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(curvature < 0, 0.5 * (a - c) / curvature, 0.0)
        offset[fit] = np.clip(delta, -0.5, 0.5)
    dominant: FloatArray = (k + offset) * df
    dominant[centre <= 0] = np.nan
    return dominant


def spectral_centroid(power: RealArray, df: float) -> FloatArray:
    """Return the power-weighted mean frequency over the non-DC bins; NaN if no power."""
    freqs = (np.arange(1, power.shape[1]) * df).astype(power.dtype)
    total = power[:, 1:].sum(axis=1, dtype=np.float64)
    weighted = (power[:, 1:] @ freqs).astype(np.float64)
    centroid: FloatArray = np.full(power.shape[0], np.nan)
    has_power = total > 0
    centroid[has_power] = weighted[has_power] / total[has_power]
    return centroid


def envelope_spectrum(
    spectrum: ComplexArray, n: int, df: float, band_hz: FloatArray, bins: int
) -> tuple[RealArray, BoolArray]:
    """Return the first ``bins`` bins of the envelope's amplitude spectrum and usable rows.

    Band-pass by keeping only the plain rFFT bins in ``[lo, hi]`` (per row of
    ``band_hz``), doubled, as the positive half of an analytic signal; an
    inverse FFT of length ``n`` (zero-padded) gives that signal shifted down
    by ``lo``, which leaves its magnitude, the envelope, unchanged. Remove the
    envelope's mean and return its Hann amplitude spectrum. Rows whose band is
    not finite, inverted or holds no bin below Nyquist are flagged False.
    """
    k_count = spectrum.shape[1]
    lo_hz, hi_hz = band_hz[:, 0], band_hz[:, 1]
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(lo_hz) & np.isfinite(hi_hz) & (lo_hz < hi_hz) & (hi_hz >= 0)
    first = np.ceil(np.maximum(np.where(finite, lo_hz, 0.0), 0.0) / df - _EDGE_SLACK)
    last = np.floor(np.where(finite, hi_hz, 0.0) / df + _EDGE_SLACK)
    last = np.minimum(last, k_count - 1.0)
    usable = finite & (first <= last)
    first_bin = np.where(usable, first, 0.0).astype(np.intp)
    last_bin = np.where(usable, last, -1.0).astype(np.intp)
    width = max(int((last_bin - first_bin).max(initial=-1)) + 1, 1)
    idx = first_bin[:, None] + np.arange(width)
    weight = np.where(idx <= last_bin[:, None], 2.0, 0.0)
    # DC and an even-n Nyquist bin have no negative twin, so they are not doubled.
    weight[(idx == 0) | ((n % 2 == 0) & (idx == k_count - 1))] /= 2.0
    np.minimum(idx, k_count - 1, out=idx)
    shifted = np.take_along_axis(spectrum, idx, axis=1) * weight.astype(spectrum.real.dtype)
    envelope = np.abs(sfft.ifft(shifted, n=n, axis=1))
    envelope -= envelope.mean(axis=1, keepdims=True)
    windowed = hann_from_rfft(rfft_rows(envelope), n, bins)
    return amplitude_from_power(power_spectrum(windowed, n), n), usable
