"""The feature set: fixed, ordered column names and where each one lives.

Each name becomes one database column, so names and order only change with a
new :data:`FEATURE_SET_VERSION`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

FEATURE_SET_VERSION = "fs1"

STANDARD_BANDS_HZ: tuple[tuple[float, float], ...] = (
    (10.0, 100.0),
    (100.0, 500.0),
    (500.0, 1000.0),
    (1000.0, 2000.0),
    (2000.0, 5000.0),
)
"""Fixed ``[lo, hi)`` power bands stored as columns; per-asset extras go through band_powers."""

FAULTS = ("bpfo", "bpfi", "bsf", "ftf")
"""Bearing defects in the order of the ``fault_orders`` columns."""

TIME_COLUMNS = (
    "mean",
    "rms",
    "peak",
    "peak_to_peak",
    "crest_factor",
    "kurtosis",
    "skewness",
    "shape_factor",
    "impulse_factor",
    "clearance_factor",
)
BAND_COLUMNS = tuple(f"band_{lo:g}_{hi:g}_power" for lo, hi in STANDARD_BANDS_HZ)
TEMPERATURE_NAMES = ("temperature_mean_c", "temperature_std_c", "temperature_slope_c_per_h")
QUALITY_COLUMNS = ("sample_count", "nan_share", "clipping_share", "flat_line")

FEATURE_NAMES: tuple[str, ...] = (
    *TIME_COLUMNS,
    *BAND_COLUMNS,
    "dominant_hz",
    "spectral_centroid_hz",
    "shaft_hz",
    *(f"{fault}_hz" for fault in FAULTS),
    *(f"spec_{fault}" for fault in FAULTS),
    *(f"env_{fault}" for fault in FAULTS),
    *TEMPERATURE_NAMES,
    *QUALITY_COLUMNS,
)

FEATURE_INDEX: Mapping[str, int] = MappingProxyType({n: i for i, n in enumerate(FEATURE_NAMES)})
TEMPERATURE_COLUMNS: tuple[int, ...] = tuple(FEATURE_INDEX[n] for n in TEMPERATURE_NAMES)

# Column positions of the groups that are written together.
FREQ_COLS = tuple(FEATURE_INDEX[f"{fault}_hz"] for fault in FAULTS)
SPEC_COLS = tuple(FEATURE_INDEX[f"spec_{fault}"] for fault in FAULTS)
ENV_COLS = tuple(FEATURE_INDEX[f"env_{fault}"] for fault in FAULTS)
BAND_COLS = tuple(FEATURE_INDEX[name] for name in BAND_COLUMNS)
SPECTRAL_COLS = (
    *BAND_COLS,
    FEATURE_INDEX["dominant_hz"],
    FEATURE_INDEX["spectral_centroid_hz"],
    *SPEC_COLS,
    *ENV_COLS,
)
"""Columns computed from the spectrum: meaningless for a window without finite samples."""
