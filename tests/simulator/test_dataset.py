"""Tests of the simulator's file output: an exact round trip."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, datetime

import numpy as np
import pytest

from cbm.bearing import BearingGeometry
from services.simulator.dataset import read_fleet, write_fleet
from services.simulator.physics import AssetSpec, SimWindow, make_fleet, simulate_fleet

START = datetime(2025, 3, 1, tzinfo=UTC)


def assert_same_window(got: SimWindow, want: SimWindow) -> None:
    for field in fields(SimWindow):
        a, b = getattr(got, field.name), getattr(want, field.name)
        if field.name == "samples":
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        else:
            assert type(a) is type(b), field.name
            assert a == b, field.name


def test_round_trip_is_exact(tmp_path):
    specs = make_fleet(4, seed=3, healthy_share=0.25)
    windows = list(simulate_fleet(specs, seed=3, start=START, max_windows=30))
    meta = {"seed": 3, "start": START.isoformat(), "hours_per_window": 1.0}
    path = tmp_path / "fleet.npz"

    assert write_fleet(path, iter(windows), specs=specs, meta=meta) == len(windows)
    data = read_fleet(path)

    assert len(data) == len(windows)
    assert data.specs == tuple(specs)
    assert any(math.isinf(s.life_hours) for s in data.specs)
    assert data.meta == meta
    assert data.samples.dtype == np.float32 and data.samples.shape == (len(windows), 1000)
    assert data.time.dtype == np.int64
    assert np.all(np.isinf(data.rul_hours[data.fault_mode == "none"]))
    for got, want in zip(data.windows(), windows, strict=True):
        assert_same_window(got, want)
    assert not list(tmp_path.glob("*.partial"))


def test_ragged_windows_are_padded_and_restored(tmp_path):
    specs = [
        AssetSpec(asset_id="short", n_samples=500, fault_mode="outer", life_hours=5.0),
        AssetSpec(
            asset_id="long",
            n_samples=2048,
            sample_rate_hz=10_000.0,
            geometry=BearingGeometry(n_balls=12, ball_diameter_mm=8.0, pitch_diameter_mm=46.0),
        ),
    ]
    windows = list(simulate_fleet(specs, seed=1, start=START))
    path = tmp_path / "ragged"  # no suffix: the file keeps the given name

    write_fleet(path, windows, specs=specs, meta={})
    data = read_fleet(path)

    assert path.exists()
    assert data.samples.shape == (len(windows), 2048)
    assert sorted(set(data.n_samples.tolist())) == [500, 2048]
    short = data.n_samples == 500
    assert np.all(data.samples[short, 500:] == 0)
    for got, want in zip(data.windows(), windows, strict=True):
        assert_same_window(got, want)
    assert data.specs == tuple(specs)


def test_times_are_microseconds_since_the_epoch(tmp_path):
    specs = make_fleet(1, seed=0, healthy_share=0.0)
    windows = list(simulate_fleet(specs, seed=0, start=START, max_windows=3))
    path = tmp_path / "t.npz"
    write_fleet(path, windows, specs=specs, meta={})
    data = read_fleet(path)
    want = [round(w.time.timestamp() * 1_000_000) for w in windows]
    assert data.time.tolist() == want
    assert data.event_time(0) == windows[0].time and data.event_time(0).tzinfo is UTC


def test_windows_of_unknown_assets_are_refused(tmp_path):
    specs = make_fleet(2, seed=0, healthy_share=0.0)
    windows = list(simulate_fleet(specs, seed=0, start=START, max_windows=2))
    with pytest.raises(ValueError):
        write_fleet(tmp_path / "x.npz", windows, specs=specs[:1], meta={})
    assert not list(tmp_path.iterdir())


def test_an_empty_fleet_round_trips(tmp_path):
    path = tmp_path / "empty.npz"
    assert write_fleet(path, [], specs=[], meta={"seed": 0}) == 0
    data = read_fleet(path)
    assert len(data) == 0 and data.specs == () and data.meta == {"seed": 0}


def test_other_files_are_refused(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, meta_json=np.array('{"format": "something-else", "version": 1}'))
    with pytest.raises(ValueError):
        read_fleet(path)
