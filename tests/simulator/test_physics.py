"""Tests of the simulator's physics: ground truth, signal content, reproducibility."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import signal, stats

from cbm.bearing import BearingGeometry
from cbm.topics import ASSET_ID_PATTERN
from services.simulator.physics import (
    AssetSimulator,
    AssetSpec,
    FaultMode,
    SimWindow,
    make_fleet,
    simulate_fleet,
)

START = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
HOURS = 1.0


def by_asset(windows: list[SimWindow]) -> dict[str, list[SimWindow]]:
    grouped: dict[str, list[SimWindow]] = defaultdict(list)
    for window in windows:
        grouped[window.asset_id].append(window)
    return grouped


def rms(windows: list[SimWindow]) -> np.ndarray:
    x = np.stack([w.samples for w in windows]).astype(np.float64)
    return np.sqrt(np.mean(x**2, axis=1))


def kurtosis(windows: list[SimWindow]) -> np.ndarray:
    x = np.stack([w.samples for w in windows]).astype(np.float64)
    return stats.kurtosis(x, axis=1, fisher=False)


def rolling_median(values: np.ndarray, width: int) -> np.ndarray:
    half = width // 2
    return np.array(
        [np.median(values[max(0, i - half) : i + half + 1]) for i in range(values.size)]
    )


def envelope_spectrum(spec: AssetSpec, windows: list[SimWindow]) -> tuple[np.ndarray, np.ndarray]:
    """Return frequencies and the envelope spectrum of the resonance band, averaged."""
    fs = spec.sample_rate_hz
    top = min(spec.resonance_hz + 400.0, 0.49 * fs)
    sos = signal.butter(4, [spec.resonance_hz - 400.0, top], btype="bandpass", fs=fs, output="sos")
    x = np.stack([w.samples for w in windows]).astype(np.float64)
    envelope = np.abs(signal.hilbert(signal.sosfiltfilt(sos, x, axis=1), axis=1))
    envelope -= envelope.mean(axis=1, keepdims=True)
    spectrum = np.abs(np.fft.rfft(envelope, axis=1)).mean(axis=0)
    return np.fft.rfftfreq(x.shape[1], 1.0 / fs), spectrum


def envelope_peak_hz(spec: AssetSpec, windows: list[SimWindow]) -> tuple[float, float]:
    """Return the envelope-spectrum peak between 10 and 500 Hz and the bin width."""
    freqs, spectrum = envelope_spectrum(spec, windows)
    band = (freqs >= 10.0) & (freqs <= 500.0)
    return float(freqs[band][np.argmax(spectrum[band])]), float(freqs[1])


def line_prominence(spec: AssetSpec, windows: list[SimWindow], line_hz: float) -> float:
    """Return the envelope spectrum near ``line_hz`` over its median between 10 and 500 Hz."""
    freqs, spectrum = envelope_spectrum(spec, windows)
    band = (freqs >= 10.0) & (freqs <= 500.0)
    near = np.abs(freqs - line_hz) <= freqs[1]
    return float(spectrum[near].max() / np.median(spectrum[band]))


def defect_order(geometry: BearingGeometry, mode: FaultMode) -> float:
    """Compute the impact order from the textbook formulas, independently of cbm.bearing."""
    ratio = (
        geometry.ball_diameter_mm
        / geometry.pitch_diameter_mm
        * math.cos(math.radians(geometry.contact_angle_deg))
    )
    n = geometry.n_balls
    if mode == "outer":
        return n / 2 * (1 - ratio)
    if mode == "inner":
        return n / 2 * (1 + ratio)
    bsf = geometry.pitch_diameter_mm / (2 * geometry.ball_diameter_mm) * (1 - ratio**2)
    return 2 * bsf


@pytest.fixture(scope="module")
def fleet() -> tuple[list[AssetSpec], list[SimWindow]]:
    specs = make_fleet(8, seed=5, healthy_share=0.25, prefix="pump")
    return specs, list(simulate_fleet(specs, seed=5, start=START, hours_per_window=HOURS))


@pytest.fixture(scope="module")
def one_of_each() -> dict[FaultMode, tuple[AssetSpec, list[SimWindow]]]:
    units: dict[FaultMode, tuple[AssetSpec, list[SimWindow]]] = {}
    for seed, mode in enumerate(("outer", "inner", "ball")):
        specs = make_fleet(1, seed=100 + seed, fault_modes=[mode], healthy_share=0.0)
        units[mode] = (specs[0], list(simulate_fleet(specs, seed=100 + seed, start=START)))
    return units


def test_rul_falls_monotonically_to_zero_at_failure(fleet):
    specs, windows = fleet
    grouped = by_asset(windows)
    for spec in (s for s in specs if s.degrades):
        life = grouped[spec.asset_id]
        rul = np.array([w.rul_hours for w in life])
        assert np.all(np.diff(rul) <= 0)
        assert rul[0] == pytest.approx(spec.life_hours)
        assert rul[-1] == 0.0
        assert life[-1].failed and life[-1].severity == 1.0 and life[-1].running
        assert not any(w.failed for w in life[:-1])
        # A running window is followed by one hour less of life (the last step is the
        # remainder); an idle one by none.
        for before, after in itertools.pairwise(life[:-1]):
            expected = HOURS if before.running else 0.0
            assert before.rul_hours - after.rul_hours == pytest.approx(expected)


def test_severity_is_zero_before_onset_and_never_shrinks(fleet):
    specs, windows = fleet
    grouped = by_asset(windows)
    for spec in (s for s in specs if s.degrades):
        life = grouped[spec.asset_id]
        severity = np.array([w.severity for w in life])
        hours = np.array([w.operating_hours for w in life])
        assert np.all(np.diff(severity) >= 0)
        assert np.all(severity[hours <= spec.onset_fraction * spec.life_hours] == 0)
        assert np.all((severity >= 0) & (severity <= 1))
        # Accelerating growth: halfway from onset to failure the defect is still small.
        onset = spec.onset_fraction * spec.life_hours
        halfway = severity[hours >= (onset + spec.life_hours) / 2][0]
        assert 0 < halfway < 0.4


@pytest.mark.parametrize("mode", ["outer", "inner", "ball"])
def test_rms_and_kurtosis_trend_up_while_the_defect_grows(one_of_each, mode):
    _, windows = one_of_each[mode]
    running = [w for w in windows if w.running]
    degrading = [w for w in running if w.severity > 0]
    healthy = [w for w in running if w.severity == 0]
    assert len(degrading) > 30 and len(healthy) > 30
    # Spearman over the defect's growth (onset to failure): before onset there is
    # nothing to trend. A centred 5-window running median tames single-window noise.
    order = np.arange(len(degrading))
    for feature in (rms, kurtosis):
        rho = stats.spearmanr(order, rolling_median(feature(degrading), 5)).statistic
        assert rho > 0.8, (feature.__name__, rho)
    # Over the whole life: the end is far above the healthy baseline.
    assert rms(running[-5:]).mean() > 2.5 * rms(healthy).mean()
    assert kurtosis(running[-5:]).mean() > 2.0 * kurtosis(healthy).mean()


@pytest.mark.parametrize("mode", ["outer", "inner", "ball"])
def test_envelope_spectrum_peaks_at_the_defect_frequency(one_of_each, mode):
    spec, windows = one_of_each[mode]
    late = [w for w in windows if w.running][-5:]
    peak_hz, bin_hz = envelope_peak_hz(spec, late)
    expected_hz = defect_order(spec.geometry, mode) * np.mean([w.shaft_hz for w in late])
    assert abs(peak_hz - expected_hz) <= bin_hz, (peak_hz, expected_hz)


def test_the_defect_line_appears_only_with_the_defect(one_of_each):
    spec, windows = one_of_each["outer"]
    running = [w for w in windows if w.running]
    early = [w for w in running if w.severity == 0][:5]
    late = running[-5:]
    bpfo_hz = defect_order(spec.geometry, "outer") * np.mean([w.shaft_hz for w in running])
    assert line_prominence(spec, early, bpfo_hz) < 3.0
    assert line_prominence(spec, late, bpfo_hz) > 10.0


def test_same_seed_same_data_different_seed_different_data():
    def run(seed: int) -> tuple[list[AssetSpec], list[SimWindow]]:
        specs = make_fleet(3, seed=seed, healthy_share=0.34)
        return specs, list(simulate_fleet(specs, seed=seed, start=START, max_windows=40))

    specs_a, windows_a = run(9)
    specs_b, windows_b = run(9)
    specs_c, windows_c = run(10)
    assert specs_a == specs_b
    assert specs_a != specs_c
    assert len(windows_a) == len(windows_b)
    for a, b in zip(windows_a, windows_b, strict=True):
        assert (a.asset_id, a.time, a.seq, a.temperature_c, a.shaft_hz, a.running) == (
            b.asset_id,
            b.time,
            b.seq,
            b.temperature_c,
            b.shaft_hz,
            b.running,
        )
        assert (a.rul_hours, a.severity, a.fault_mode, a.failed) == (
            b.rul_hours,
            b.severity,
            b.fault_mode,
            b.failed,
        )
        np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(windows_a[0].samples, windows_c[0].samples)


def test_machine_off_means_quiet_sensor_and_no_ageing(fleet):
    _, windows = fleet
    grouped = by_asset(windows)
    off_seen = 0
    for life in grouped.values():
        for before, window in itertools.pairwise(life):
            if window.running:
                continue
            off_seen += 1
            assert window.shaft_hz == 0.0
            assert rms([window])[0] < 0.005
            if not before.running:
                assert window.severity == before.severity
                assert window.operating_hours == before.operating_hours
                assert window.rul_hours == before.rul_hours
    assert off_seen > 10


def test_a_standing_machine_cools_toward_ambient(fleet):
    specs, windows = fleet
    ambient = {spec.asset_id: spec.ambient_c for spec in specs}
    cooled = 0
    for life in by_asset(windows).values():
        for warm, last_on, first_off, second_off in zip(
            life, life[1:], life[2:], life[3:], strict=False
        ):
            if warm.running and last_on.running and not (first_off.running or second_off.running):
                # The first idle window still holds the heat of the hour before it.
                assert second_off.temperature_c < last_on.temperature_c - 5.0
                assert second_off.temperature_c < ambient[last_on.asset_id] + 10.0
                cooled += 1
    assert cooled > 3


def test_temperature_rises_with_degradation(one_of_each):
    for _, windows in one_of_each.values():
        # Windows after a running hour: a machine that has just started is still cold.
        warm = [b for a, b in itertools.pairwise(windows) if a.running and b.running]
        healthy = np.mean([w.temperature_c for w in warm if w.severity == 0])
        worn = np.mean([w.temperature_c for w in warm if w.severity > 0.5])
        assert worn > healthy + 5.0


def test_lives_are_spread_and_healthy_controls_have_no_end():
    specs = make_fleet(60, seed=1, life_mean_hours=200.0, healthy_share=0.2)
    lives = np.array([s.life_hours for s in specs if s.degrades])
    assert sum(not s.degrades for s in specs) == 12
    assert all(math.isinf(s.life_hours) for s in specs if not s.degrades)
    assert len(set(lives.tolist())) == lives.size
    assert lives.std() / lives.mean() > 0.2
    assert lives.min() >= 0.3 * 200.0
    assert 150.0 < lives.mean() < 250.0
    modes = [s.fault_mode for s in specs if s.degrades]
    assert sorted(set(modes)) == ["ball", "inner", "outer"]
    assert max(modes.count(m) for m in set(modes)) - min(modes.count(m) for m in set(modes)) <= 1


def test_healthy_controls_run_until_the_last_failure(fleet):
    specs, windows = fleet
    grouped = by_asset(windows)
    last_failure = max(w.time for w in windows if w.failed)
    for spec in (s for s in specs if not s.degrades):
        life = grouped[spec.asset_id]
        assert all(math.isinf(w.rul_hours) and w.severity == 0 and not w.failed for w in life)
        assert last_failure - timedelta(hours=HOURS) < life[-1].time <= last_failure


def test_windows_are_in_event_time_order_with_a_steady_cadence(fleet):
    specs, windows = fleet
    times = [w.time for w in windows]
    assert times == sorted(times)
    assert all(t.utcoffset() == timedelta(0) for t in times)
    for life in by_asset(windows).values():
        assert [w.seq for w in life] == list(range(len(life)))
        steps = {b.time - a.time for a, b in itertools.pairwise(life)}
        assert max(steps) - min(steps) <= timedelta(microseconds=1)
        assert START <= life[0].time < START + timedelta(hours=HOURS)
    assert all(ASSET_ID_PATTERN.fullmatch(s.asset_id) for s in specs)
    assert specs[0].asset_id == "pump-001"


def test_window_shape_follows_the_spec():
    spec = AssetSpec(
        asset_id="fan-7",
        fault_mode="outer",
        life_hours=20.0,
        sample_rate_hz=12_000.0,
        n_samples=2048,
        resonance_hz=3_000.0,
    )
    sim = AssetSimulator(spec, rng=np.random.default_rng(0), start=START, hours_per_window=2.0)
    window = sim.next_window()
    assert window.samples.dtype == np.float32 and window.samples.shape == (2048,)
    assert window.sample_rate_hz == 12_000.0


def test_a_failed_asset_emits_nothing_more():
    spec = AssetSpec(asset_id="m1", fault_mode="inner", life_hours=3.0, mean_run_hours=1e9)
    sim = AssetSimulator(spec, rng=np.random.default_rng(0), start=START, hours_per_window=1.0)
    windows = [sim.next_window() for _ in range(4)]
    assert [w.rul_hours for w in windows] == [3.0, 2.0, 1.0, 0.0]
    assert sim.failed
    with pytest.raises(RuntimeError):
        sim.next_window()


def test_max_windows_caps_every_asset():
    specs = make_fleet(4, seed=2, healthy_share=0.5)
    counts = defaultdict(int)
    for window in simulate_fleet(specs, seed=2, start=START, max_windows=7):
        counts[window.asset_id] += 1
    assert counts == {spec.asset_id: 7 for spec in specs}


@pytest.mark.parametrize(
    "changes",
    [
        {"asset_id": "-bad"},
        {"asset_id": "a" * 65},
        {"fault_mode": "cage"},
        {"fault_mode": "outer"},  # a degrading asset needs a finite life
        {"life_hours": 10.0},  # and a healthy one must not have one
        {"resonance_hz": 3000.0},  # above Nyquist at 5 kHz
    ],
)
def test_invalid_specs_are_refused(changes):
    fields = {"asset_id": "ok", **changes}
    with pytest.raises(ValueError):
        AssetSpec(**fields)


def test_naive_start_is_refused():
    with pytest.raises(ValueError):
        AssetSimulator(
            AssetSpec(asset_id="x"),
            rng=np.random.default_rng(0),
            start=datetime(2025, 1, 1),  # noqa: DTZ001 - the point of the test
            hours_per_window=1.0,
        )


def test_a_fleet_without_failures_needs_a_horizon():
    with pytest.raises(ValueError):
        simulate_fleet([AssetSpec(asset_id="x")], seed=0, start=START)
