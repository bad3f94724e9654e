"""Tests of the pure feature-extraction core against independent computations."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.stats

from cbm.bearing import BearingGeometry
from services.features.extract import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    MIN_SAMPLES,
    TEMPERATURE_COLUMNS,
    WindowInput,
    band_powers,
    extract,
    extract_mixed,
    fill_temperature,
    orders_array,
    temperature_features,
)
from services.features.spectrum import hann_from_rfft

FS = 5000.0
N = 1000
SHAFT_HZ = 25.0
BAND = (1200.0, 2400.0)
ORDERS_6205 = orders_array(BearingGeometry().orders())


def col(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, FEATURE_INDEX[name]]


def run(samples: np.ndarray, **overrides: object) -> np.ndarray:
    kwargs: dict[str, object] = {
        "sample_rate_hz": FS,
        "shaft_hz": SHAFT_HZ,
        "fault_orders": ORDERS_6205,
        "resonance_band_hz": BAND,
    }
    kwargs.update(overrides)
    return extract(samples, **kwargs)  # type: ignore[arg-type]


def time_axis(n: int = N, fs: float = FS) -> np.ndarray:
    return np.arange(n) / fs


# --- the feature set itself --------------------------------------------------


def test_feature_names_are_unique_snake_case_and_complete() -> None:
    required = {
        "rms", "peak", "peak_to_peak", "crest_factor", "kurtosis", "skewness",
        "shape_factor", "impulse_factor", "clearance_factor", "band_100_500_power",
        "dominant_hz", "spectral_centroid_hz", "shaft_hz", "bpfo_hz", "bpfi_hz",
        "bsf_hz", "ftf_hz", "spec_bpfo", "spec_bpfi", "spec_bsf", "spec_ftf",
        "env_bpfo", "env_bpfi", "env_bsf", "env_ftf", "temperature_mean_c",
        "temperature_std_c", "temperature_slope_c_per_h", "sample_count",
        "nan_share", "clipping_share", "flat_line",
    }  # fmt: skip
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert required <= set(FEATURE_NAMES)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in FEATURE_NAMES)
    assert FEATURE_SET_VERSION == "fs1"
    assert [FEATURE_NAMES[i] for i in TEMPERATURE_COLUMNS] == [
        "temperature_mean_c", "temperature_std_c", "temperature_slope_c_per_h",
    ]  # fmt: skip


# --- time domain ---------------------------------------------------------------


def test_moments_match_scipy_stats() -> None:
    rng = np.random.default_rng(7)
    # Skewed, heavy-tailed, offset data so every moment is far from zero.
    x = rng.gamma(shape=2.0, scale=0.3, size=(6, N)) + 4.0
    f = run(x)
    np.testing.assert_allclose(col(f, "kurtosis"), scipy.stats.kurtosis(x, axis=1), rtol=1e-10)
    np.testing.assert_allclose(col(f, "skewness"), scipy.stats.skew(x, axis=1), rtol=1e-10)
    ac_rms = np.sqrt(scipy.stats.moment(x, moment=2, axis=1))
    np.testing.assert_allclose(col(f, "rms"), ac_rms, rtol=1e-12)
    np.testing.assert_allclose(col(f, "mean"), x.mean(axis=1), rtol=1e-12)
    centred = x - x.mean(axis=1, keepdims=True)
    peak = np.abs(centred).max(axis=1)
    np.testing.assert_allclose(col(f, "peak"), peak, rtol=1e-12)
    np.testing.assert_allclose(col(f, "peak_to_peak"), np.ptp(x, axis=1), rtol=1e-12)
    np.testing.assert_allclose(col(f, "crest_factor"), peak / ac_rms, rtol=1e-10)
    np.testing.assert_allclose(
        col(f, "clearance_factor"),
        peak / np.mean(np.sqrt(np.abs(centred)), axis=1) ** 2,
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        col(f, "impulse_factor"), peak / np.mean(np.abs(centred), axis=1), rtol=1e-10
    )


def test_float32_input_stays_close_to_float64() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_t(df=5, size=(4, N))
    f64 = run(x)
    f32 = run(x.astype(np.float32))
    for name in ("rms", "kurtosis", "skewness", "crest_factor", "band_100_500_power", "env_bpfo"):
        np.testing.assert_allclose(col(f32, name), col(f64, name), rtol=2e-4, err_msg=name)


def test_rms_of_a_sine_is_amplitude_over_root_two() -> None:
    amplitude = 3.0
    x = amplitude * np.sin(2 * np.pi * 50.0 * time_axis())  # ten whole periods
    f = run(x[None, :])
    assert col(f, "rms")[0] == pytest.approx(amplitude / np.sqrt(2), rel=1e-12)
    assert col(f, "crest_factor")[0] == pytest.approx(np.sqrt(2), rel=1e-3)
    assert col(f, "kurtosis")[0] == pytest.approx(-1.5, abs=1e-9)
    assert col(f, "shape_factor")[0] == pytest.approx(np.pi / (2 * np.sqrt(2)), rel=1e-3)


# --- spectrum -----------------------------------------------------------------


def test_spectrum_peak_and_dominant_frequency_land_on_an_injected_tone() -> None:
    rng = np.random.default_rng(3)
    tone_hz, amplitude = 437.3, 0.8  # deliberately between bins (df = 5 Hz)
    x = amplitude * np.sin(2 * np.pi * tone_hz * time_axis()) + 0.01 * rng.standard_normal(N)
    f = run(x[None, :])
    assert col(f, "dominant_hz")[0] == pytest.approx(tone_hz, abs=0.5)
    assert col(f, "spectral_centroid_hz")[0] == pytest.approx(tone_hz, abs=5.0)
    assert col(f, "band_100_500_power")[0] == pytest.approx(amplitude**2 / 2, rel=0.02)
    assert col(f, "band_500_1000_power")[0] < 1e-3 * amplitude**2


def test_spectrum_amplitude_at_bpfo_reads_the_tone_amplitude() -> None:
    bpfo_hz = SHAFT_HZ * ORDERS_6205[0]
    amplitude = 0.5
    x = amplitude * np.cos(2 * np.pi * bpfo_hz * time_axis())
    f = run(x[None, :])
    # Hann scalloping loses at most 15 % between bins.
    assert 0.84 * amplitude <= col(f, "spec_bpfo")[0] <= 1.01 * amplitude
    assert col(f, "spec_bpfi")[0] < 0.01 * amplitude
    assert col(f, "spec_ftf")[0] < 0.01 * amplitude


@pytest.mark.parametrize("n", [1000, 999])
def test_three_tap_hann_equals_the_fft_of_the_windowed_signal(n: int) -> None:
    x = np.random.default_rng(n).standard_normal((3, n))
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    expected = np.fft.rfft(x * hann, axis=1)
    plain = np.fft.rfft(x, axis=1)
    np.testing.assert_allclose(hann_from_rfft(plain, n), expected, atol=1e-9)
    np.testing.assert_allclose(hann_from_rfft(plain, n, 40), expected[:, :40], atol=1e-9)


def test_odd_length_windows_work_too() -> None:
    n = 999
    x = 2.0 * np.sin(2 * np.pi * 300.0 * np.arange(n) / FS)
    f = run(x[None, :])
    assert col(f, "dominant_hz")[0] == pytest.approx(300.0, abs=0.5)
    assert col(f, "band_100_500_power")[0] == pytest.approx(2.0, rel=0.02)


def test_band_powers_returns_nan_above_nyquist_and_rejects_bad_bands() -> None:
    x = 2.0 * np.sin(2 * np.pi * 300.0 * time_axis())
    out = band_powers(
        x[None, :], sample_rate_hz=FS, bands=[(250.0, 350.0), (400.0, 600.0), (3000.0, 4000.0)]
    )
    assert out.shape == (1, 3)
    assert out[0, 0] == pytest.approx(2.0, rel=1e-9)
    assert out[0, 1] < 1e-9
    assert np.isnan(out[0, 2])
    with pytest.raises(ValueError, match="lo < hi"):
        band_powers(x[None, :], sample_rate_hz=FS, bands=[(500.0, 100.0)])


def test_standard_band_above_nyquist_is_nan() -> None:
    x = np.random.default_rng(0).standard_normal((1, 400))
    f = run(x, sample_rate_hz=2000.0)  # Nyquist 1000 Hz
    assert np.isnan(col(f, "band_2000_5000_power")[0])
    assert np.isfinite(col(f, "band_1000_2000_power")[0])  # the part below Nyquist
    assert col(f, "band_500_1000_power")[0] > 0


# --- bearing frequencies and the envelope -------------------------------------


def test_6205_orders_match_the_cwru_table() -> None:
    """Check cbm.bearing against the Case Western Reserve University table.

    CWRU Bearing Data Center, "Bearing information" (6205-2RS JEM SKF, drive
    end), https://engineering.case.edu/bearingdatacenter: defect frequencies
    in multiples of running speed BPFI 5.4152, BPFO 3.5848, FTF 0.39828,
    BSF 4.7135, where the tabulated BSF is twice the ball spin frequency.
    """
    orders = BearingGeometry().orders()
    assert orders.bpfi == pytest.approx(5.4152, rel=1e-4)
    assert orders.bpfo == pytest.approx(3.5848, rel=1e-4)
    assert orders.ftf == pytest.approx(0.39828, rel=1e-4)
    assert 2 * orders.bsf == pytest.approx(4.7135, rel=1e-4)
    shaft = 29.95  # 1797 rpm, a CWRU test speed
    f = run(np.zeros((1, N)), shaft_hz=shaft)
    for name, table in (
        ("bpfi_hz", 5.4152),
        ("bpfo_hz", 3.5848),
        ("ftf_hz", 0.39828),
        ("bsf_hz", 4.7135),
    ):
        assert col(f, name)[0] == pytest.approx(table * shaft, rel=1e-4), name


def test_envelope_finds_a_modulation_at_bpfo() -> None:
    shaft = 29.0
    bpfo_hz = shaft * ORDERS_6205[0]
    t = time_axis()
    rng = np.random.default_rng(11)
    carrier = np.cos(2 * np.pi * 1800.0 * t)
    noise = 0.05 * rng.standard_normal((2, N))
    modulated = (1.0 + 0.5 * np.cos(2 * np.pi * bpfo_hz * t)) * carrier + noise[0]
    plain = carrier + noise[1]
    f = run(np.stack([modulated, plain]), shaft_hz=shaft)
    env_bpfo, env_bpfi = col(f, "env_bpfo"), col(f, "env_bpfi")
    assert env_bpfo[0] == pytest.approx(0.5, rel=0.2)
    assert env_bpfo[0] > 20 * env_bpfi[0]
    assert env_bpfo[0] > 20 * env_bpfo[1]
    # The plain spectrum sees nothing at BPFO: the information is in the envelope.
    assert col(f, "spec_bpfo")[0] < 0.01


def test_envelope_only_demodulates_the_resonance_band() -> None:
    bpfo_hz = SHAFT_HZ * ORDERS_6205[0]
    t = time_axis()
    low_modulated = (1.0 + 0.5 * np.cos(2 * np.pi * bpfo_hz * t)) * np.cos(2 * np.pi * 400.0 * t)
    x = low_modulated + np.cos(2 * np.pi * 1800.0 * t)
    f = run(np.stack([x, x]), resonance_band_hz=np.array([[1200.0, 2400.0], [200.0, 600.0]]))
    assert col(f, "env_bpfo")[0] < 0.01  # the 1,800 Hz carrier is not modulated
    assert col(f, "env_bpfo")[1] == pytest.approx(0.5, rel=0.2)


def test_envelope_separates_outer_race_impacts_from_inner_race() -> None:
    """Decaying resonance bursts repeating at BPFO (a spalled outer race)."""
    shaft = SHAFT_HZ
    bpfo_hz = shaft * ORDERS_6205[0]
    t = time_axis()
    impacts = np.zeros(N)
    impacts[np.round(np.arange(0, t[-1], 1 / bpfo_hz) * FS).astype(int)] = 1.0
    ring = np.exp(-t[:60] * 800.0) * np.sin(2 * np.pi * 1900.0 * t[:60])
    x = np.convolve(impacts, ring)[:N] + 0.05 * np.random.default_rng(5).standard_normal(N)
    f = run(x[None, :], shaft_hz=shaft)
    assert col(f, "env_bpfo")[0] > 5 * col(f, "env_bpfi")[0]
    assert col(f, "env_bpfo")[0] > 5 * col(f, "env_bsf")[0]
    assert col(f, "kurtosis")[0] > 1.0


def test_envelope_band_above_nyquist_gives_nan_envelope_only() -> None:
    x = np.random.default_rng(1).standard_normal((1, N))
    f = run(x, resonance_band_hz=(3000.0, 4000.0))
    assert np.isnan(col(f, "env_bpfo")).all()
    assert np.isfinite(col(f, "spec_bpfo")).all()


def test_unusable_shaft_speed_gives_nan_fault_columns() -> None:
    x = np.random.default_rng(2).standard_normal((3, N))
    f = run(x, shaft_hz=np.array([0.0, np.nan, 25.0]))
    for name in ("shaft_hz", "bpfo_hz", "spec_bpfo", "env_bpfo"):
        assert np.isnan(col(f, name)[:2]).all(), name
        assert np.isfinite(col(f, name)[2]), name
    assert np.isfinite(col(f, "rms")).all()


def test_tiny_tolerance_still_reads_the_nearest_bin() -> None:
    bpfo_hz = SHAFT_HZ * ORDERS_6205[0]
    x = np.cos(2 * np.pi * bpfo_hz * time_axis())
    f = run(x[None, :], tolerance_hz=0.01)
    assert col(f, "spec_bpfo")[0] > 0.5


# --- batching -----------------------------------------------------------------


def batch_of_awkward_windows(rng: np.random.Generator, n: int = N) -> np.ndarray:
    x = rng.standard_normal((6, n)) * rng.uniform(0.1, 3.0, size=(6, 1))
    x[1, ::7] = np.nan
    x[2] = 1.25
    x[3, :] = np.nan
    # A sensor driven into its rails: a sine clipped at ±0.8.
    x[4] = np.clip(np.sin(2 * np.pi * 50.0 * np.arange(n) / FS) + 0.05 * x[4], -0.8, 0.8)
    return x


def test_batched_extraction_equals_one_window_at_a_time() -> None:
    rng = np.random.default_rng(21)
    x = batch_of_awkward_windows(rng)
    shaft = rng.uniform(10.0, 60.0, size=len(x))
    orders = ORDERS_6205 * rng.uniform(0.9, 1.1, size=(len(x), 4))
    band = np.array([[1200.0, 2400.0], [800.0, 1600.0], [1000.0, 2000.0],
                     [1500.0, 2450.0], [1200.0, 2400.0], [900.0, 2500.0]])  # fmt: skip
    batched = run(x, shaft_hz=shaft, fault_orders=orders, resonance_band_hz=band)
    assert batched.shape == (len(x), len(FEATURE_NAMES))
    for i in range(len(x)):
        single = run(
            x[i : i + 1],
            shaft_hz=shaft[i : i + 1],
            fault_orders=orders[i],
            resonance_band_hz=band[i],
        )
        np.testing.assert_allclose(batched[i], single[0], rtol=1e-9, atol=1e-15, equal_nan=True)


def test_extract_mixed_matches_per_group_extraction_in_input_order() -> None:
    rng = np.random.default_rng(4)
    specs = [
        (1000, 5000.0),
        (2048, 10000.0),
        (1000, 5000.0),
        (500, 2500.0),
        (8, 5000.0),
        (2048, 10000.0),
    ]
    windows = [
        WindowInput(
            samples=rng.standard_normal(n).astype(np.float32),
            sample_rate_hz=rate,
            shaft_hz=float(rng.uniform(15, 50)),
            fault_orders=ORDERS_6205,
            resonance_band_hz=(rate * 0.2, rate * 0.4),
        )
        for n, rate in specs
    ]
    mixed = extract_mixed(windows)
    assert mixed.shape == (len(windows), len(FEATURE_NAMES))
    np.testing.assert_array_equal(col(mixed, "sample_count"), [n for n, _ in specs])
    for key in set(specs):
        rows = [i for i, s in enumerate(specs) if s == key]
        group = extract(
            np.stack([windows[i].samples for i in rows]),
            sample_rate_hz=key[1],
            shaft_hz=np.array([windows[i].shaft_hz for i in rows]),
            fault_orders=ORDERS_6205,
            resonance_band_hz=np.array([windows[i].resonance_band_hz for i in rows]),
        )
        np.testing.assert_array_equal(mixed[rows], group)


def test_extract_mixed_of_nothing_is_an_empty_matrix() -> None:
    assert extract_mixed([]).shape == (0, len(FEATURE_NAMES))


# --- bad windows ---------------------------------------------------------------


def test_bad_windows_are_flagged_not_raised() -> None:
    rng = np.random.default_rng(9)
    x = batch_of_awkward_windows(rng)
    f = run(x)
    quality = ["sample_count", "nan_share", "clipping_share", "flat_line"]
    assert np.isfinite(f[:, [FEATURE_INDEX[q] for q in quality]]).all()

    # NaN gaps: share measured, moments over the finite samples only.
    valid = x[1][np.isfinite(x[1])]
    assert col(f, "nan_share")[1] == pytest.approx(1 - valid.size / N)
    assert col(f, "kurtosis")[1] == pytest.approx(scipy.stats.kurtosis(valid), rel=1e-10)
    assert col(f, "rms")[1] == pytest.approx(valid.std(), rel=1e-12)

    # Flat line: flagged, offset and level kept, ratios undefined, spectra empty.
    assert col(f, "flat_line")[2] == 1.0
    assert col(f, "mean")[2] == 1.25
    assert col(f, "rms")[2] == 0.0
    assert np.isnan(col(f, "kurtosis")[2]) and np.isnan(col(f, "crest_factor")[2])
    assert col(f, "band_100_500_power")[2] == 0.0 and np.isnan(col(f, "dominant_hz")[2])

    # All NaN: only data quality and operating point survive.
    row = f[3]
    assert col(f, "nan_share")[3] == 1.0 and col(f, "flat_line")[3] == 0.0
    kept = {*quality, "shaft_hz", "bpfo_hz", "bpfi_hz", "bsf_hz", "ftf_hz"}
    for name, value in zip(FEATURE_NAMES, row, strict=True):
        assert np.isfinite(value) == (name in kept), name

    # Clipped at ±0.8: the plateaus at the rails are counted.
    rails = np.abs(x[4]) == 0.8
    assert rails.mean() > 0.3
    # Noise makes a few lone samples touch a rail; only runs of two or more count.
    assert 0.85 * rails.mean() <= col(f, "clipping_share")[4] <= rails.mean()
    assert col(f, "clipping_share")[0] == 0.0
    assert col(f, "flat_line")[0] == 0.0


def test_short_windows_get_data_quality_only() -> None:
    x = np.array([[0.1, -0.2, 0.3, np.nan, 0.5, 0.5, -0.1, 0.0]])
    assert x.shape[1] < MIN_SAMPLES
    f = run(x)
    assert col(f, "sample_count")[0] == 8
    assert col(f, "nan_share")[0] == pytest.approx(1 / 8)
    assert col(f, "flat_line")[0] == 0.0
    assert col(f, "clipping_share")[0] == pytest.approx(2 / 7)
    for name in ("rms", "kurtosis", "band_100_500_power", "env_bpfo", "spec_bpfo", "dominant_hz"):
        assert np.isnan(col(f, name)[0]), name


def test_infinite_samples_count_as_missing() -> None:
    x = np.random.default_rng(6).standard_normal((1, N))
    x[0, :10] = np.inf
    f = run(x)
    assert col(f, "nan_share")[0] == pytest.approx(0.01)
    assert np.isfinite(col(f, "rms")[0]) and np.isfinite(col(f, "env_bpfo")[0])


def test_empty_batch_and_empty_windows_do_not_raise() -> None:
    assert run(np.zeros((0, N))).shape == (0, len(FEATURE_NAMES))
    f = run(np.zeros((2, 0)))
    assert (col(f, "sample_count") == 0).all() and np.isnan(col(f, "rms")).all()


@pytest.mark.parametrize(
    ("samples", "overrides", "message"),
    [
        (np.zeros(N), {}, "samples must be a"),
        (np.zeros((2, N)), {"fault_orders": np.zeros((3, 4))}, "fault_orders"),
        (np.zeros((2, N)), {"resonance_band_hz": (1.0, 2.0, 3.0)}, "resonance_band_hz"),
        (np.zeros((2, N)), {"shaft_hz": np.ones(3)}, "shaft_hz"),
        (np.zeros((2, N)), {"sample_rate_hz": 0.0}, "sample_rate_hz"),
        (np.zeros((2, N)), {"tolerance_hz": -1.0}, "tolerance_hz"),
        (np.zeros((2, N), dtype=complex), {}, "real numbers"),
    ],
)
def test_programmer_errors_raise_value_error(
    samples: np.ndarray, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run(samples, **overrides)


def test_window_input_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="fault_orders"):
        WindowInput(np.zeros(N), FS, SHAFT_HZ, np.zeros(3), BAND)
    with pytest.raises(ValueError, match="samples"):
        WindowInput(np.zeros((2, N)), FS, SHAFT_HZ, ORDERS_6205, BAND)


# --- temperature ---------------------------------------------------------------


def test_temperature_slope_of_a_linear_ramp_is_exact_and_ignores_nans() -> None:
    times = 1.7e9 + np.arange(10) * 60.0  # Unix seconds, one reading a minute
    temps = 40.0 + 2.5 * (times - times[0]) / 3600.0  # 2.5 °C per hour
    temps_gappy = temps.copy()
    temps_gappy[[2, 5]] = np.nan
    times_gappy = times.copy()
    times_gappy[7] = np.nan
    out = temperature_features(np.stack([times, times_gappy]), np.stack([temps, temps_gappy]))
    np.testing.assert_allclose(out[:, 2], 2.5, rtol=1e-9)
    np.testing.assert_allclose(out[0, :2], [temps.mean(), temps.std()], rtol=1e-12)
    kept = np.isfinite(temps_gappy) & np.isfinite(times_gappy)
    np.testing.assert_allclose(out[1, :2], [temps[kept].mean(), temps[kept].std()], rtol=1e-12)


def test_temperature_with_too_few_points() -> None:
    nan = np.nan
    times = np.array([[0.0, 60.0, 120.0], [0.0, nan, nan], [nan, nan, nan], [5.0, 5.0, 5.0]])
    temps = np.array([[20.0, nan, nan], [21.0, 22.0, 23.0], [20.0, 20.0, 20.0], [1.0, 2.0, 3.0]])
    out = temperature_features(times, temps)
    np.testing.assert_array_equal(out[0], [20.0, 0.0, nan])
    np.testing.assert_array_equal(out[1], [21.0, 0.0, nan])
    assert np.isnan(out[2]).all()
    assert np.isnan(out[3, 2]) and out[3, 0] == 2.0  # all at one instant: no slope
    with pytest.raises(ValueError, match="equal shape"):
        temperature_features(np.zeros((2, 3)), np.zeros((2, 4)))


def test_fill_temperature_sets_the_three_columns_only() -> None:
    f = run(np.random.default_rng(0).standard_normal((2, N)))
    temp = np.array([[30.0, 0.5, 1.5], [31.0, 0.2, -0.5]])
    filled = fill_temperature(f, temp)
    np.testing.assert_array_equal(filled[:, list(TEMPERATURE_COLUMNS)], temp)
    others = [i for i in range(len(FEATURE_NAMES)) if i not in TEMPERATURE_COLUMNS]
    np.testing.assert_array_equal(filled[:, others], f[:, others])
    assert np.isnan(f[:, list(TEMPERATURE_COLUMNS)]).all()  # the input is untouched
    with pytest.raises(ValueError, match="temp_feats"):
        fill_temperature(f, temp[:1])
