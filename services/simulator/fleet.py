"""Describe simulated bearing assets and draw a reproducible fleet of them from a seed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np

from cbm.bearing import BearingGeometry
from cbm.topics import ASSET_ID_PATTERN

FaultMode = Literal["outer", "inner", "ball", "none"]

FAULT_MODES: Final[tuple[FaultMode, ...]] = ("outer", "inner", "ball", "none")
DEFECT_MODES: Final[tuple[FaultMode, ...]] = ("outer", "inner", "ball")


# Share of the mean life no unit fails before (the location of a three-parameter
# Weibull): real bearings have a failure-free period, and a life of a handful of
# windows would teach a RUL model nothing.
_FAILURE_FREE_SHARE: Final = 0.3
# Mean and spread of the defect's growth time (onset to failure) as shares of the
# mean life, and the bounds on the onset as a fraction of a unit's own life.
_GROWTH_SHARE: Final = 0.4
_GROWTH_SHARE_SD: Final = 0.06
_ONSET_RANGE: Final = (0.1, 0.85)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetSpec:
    """Describe one simulated asset: its bearing, its duty and how it will fail.

    ``life_hours`` counts operating hours (shaft turning) from the start of the
    run to failure. A healthy control (``fault_mode="none"``) has
    ``life_hours = math.inf``: it never fails, its RUL is right-censored at
    whatever horizon the run stops at, and ``onset_fraction`` and
    ``growth_rate`` are ignored for it.

    The defect appears after ``onset_fraction * life_hours`` operating hours and
    grows through ``growth_rate`` e-folds until failure. Vibration amplitudes are
    in g (acceleration), temperatures in °C.
    """

    asset_id: str
    geometry: BearingGeometry = field(default_factory=BearingGeometry)
    shaft_hz: float = 25.0
    fault_mode: FaultMode = "none"
    life_hours: float = math.inf
    onset_fraction: float = 0.55
    growth_rate: float = 3.5
    sample_rate_hz: float = 5000.0
    n_samples: int = 1000
    resonance_hz: float = 1800.0
    damping_ratio: float = 0.05
    ambient_c: float = 22.0
    imbalance_g: float = 0.04
    noise_g: float = 0.02
    mean_run_hours: float = 48.0
    mean_off_hours: float = 6.0

    def __post_init__(self) -> None:
        if not ASSET_ID_PATTERN.fullmatch(self.asset_id):
            raise ValueError(
                f"asset_id {self.asset_id!r} does not match {ASSET_ID_PATTERN.pattern}"
            )
        if self.fault_mode not in FAULT_MODES:
            raise ValueError(f"fault_mode must be one of {FAULT_MODES}, got {self.fault_mode!r}")
        if (self.fault_mode == "none") != math.isinf(self.life_hours):
            raise ValueError("life_hours must be inf exactly when fault_mode is 'none'")
        if not self.life_hours > 0:
            raise ValueError(f"life_hours must be positive, got {self.life_hours}")
        if not 0 <= self.onset_fraction < 1:
            raise ValueError(f"onset_fraction must be in [0, 1), got {self.onset_fraction}")
        if not self.growth_rate > 0:
            raise ValueError(f"growth_rate must be positive, got {self.growth_rate}")
        if not self.shaft_hz > 0:
            raise ValueError(f"shaft_hz must be positive, got {self.shaft_hz}")
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if not 0 < self.resonance_hz < 0.5 * self.sample_rate_hz:
            raise ValueError("resonance_hz must be positive and below sample_rate_hz / 2")
        if not 0 < self.damping_ratio < 1:
            raise ValueError(f"damping_ratio must be in (0, 1), got {self.damping_ratio}")
        if self.imbalance_g < 0 or self.noise_g < 0:
            raise ValueError("imbalance_g and noise_g must be non-negative")
        if not (self.mean_run_hours > 0 and self.mean_off_hours > 0):
            raise ValueError("mean_run_hours and mean_off_hours must be positive")

    @property
    def degrades(self) -> bool:
        """Return whether this asset carries a growing defect and will fail."""
        return self.fault_mode != "none"


def make_fleet(
    n_assets: int,
    *,
    seed: int,
    life_mean_hours: float = 200.0,
    fault_modes: Sequence[FaultMode] | None = None,
    healthy_share: float = 0.2,
    prefix: str = "asset",
    life_shape: float = 2.0,
    geometry: BearingGeometry | None = None,
    sample_rate_hz: float = 5000.0,
    n_samples: int = 1000,
) -> list[AssetSpec]:
    """Draw ``n_assets`` asset specs from ``seed``; the same seed gives the same fleet.

    ``healthy_share * n_assets`` (rounded half up) assets are healthy controls; the others
    take the modes of ``fault_modes`` (default outer, inner, ball) in turn, so the
    modes are balanced, and the assignment is then shuffled. Lives follow a
    three-parameter Weibull with shape ``life_shape`` whose mean is
    ``life_mean_hours``. Ids are ``f"{prefix}-{i:03d}"`` counting from 1.
    """
    if n_assets < 0:
        raise ValueError(f"n_assets must be >= 0, got {n_assets}")
    if not 0 <= healthy_share <= 1:
        raise ValueError(f"healthy_share must be in [0, 1], got {healthy_share}")
    if not (life_mean_hours > 0 and life_shape > 0):
        raise ValueError("life_mean_hours and life_shape must be positive")
    pool: tuple[FaultMode, ...] = DEFECT_MODES if fault_modes is None else tuple(fault_modes)
    if not pool or any(mode not in FAULT_MODES for mode in pool):
        raise ValueError(f"fault_modes must be a non-empty sequence from {FAULT_MODES}")

    rng = np.random.default_rng(seed)
    n_healthy = math.floor(healthy_share * n_assets + 0.5)  # half up, not to even
    healthy: FaultMode = "none"
    ordered = [healthy] * n_healthy + [pool[i % len(pool)] for i in range(n_assets - n_healthy)]
    modes = [ordered[i] for i in rng.permutation(n_assets)]

    location = _FAILURE_FREE_SHARE * life_mean_hours
    scale = (life_mean_hours - location) / math.gamma(1 + 1 / life_shape)
    lives = location + scale * rng.weibull(life_shape, n_assets)
    # Drawn for every asset, healthy or not, so that the random stream (and so the
    # other assets' parameters) does not depend on which assets are healthy.
    # In rolling-contact fatigue the time to initiate a spall scatters far more than
    # the time the spall then takes to grow to failure. So draw the growth time and
    # derive the onset from it, rather than drawing the onset fraction directly.
    growth_hours = life_mean_hours * rng.normal(_GROWTH_SHARE, _GROWTH_SHARE_SD, n_assets)
    onsets = np.clip(1.0 - growth_hours / lives, _ONSET_RANGE[0], _ONSET_RANGE[1])
    growth = rng.uniform(2.5, 4.5, n_assets)
    # 20-30 Hz: 4-pole induction motors at 50/60 Hz and VFD-driven pumps.
    shaft = rng.uniform(20.0, 30.0, n_assets)
    # Kept below 0.45·fs so that a band-pass around the ringing fits under Nyquist.
    resonance_top = min(2400.0, 0.45 * sample_rate_hz)
    resonance_bottom = min(1200.0, 0.5 * resonance_top)
    resonance = np.clip(rng.normal(1800.0, 150.0, n_assets), resonance_bottom, resonance_top)
    damping = rng.uniform(0.04, 0.07, n_assets)
    ambient = rng.normal(22.0, 3.0, n_assets)
    imbalance = rng.uniform(0.02, 0.06, n_assets)
    noise = rng.uniform(0.015, 0.025, n_assets)
    run_hours = rng.uniform(24.0, 72.0, n_assets)
    off_hours = rng.uniform(3.0, 10.0, n_assets)

    return [
        AssetSpec(
            asset_id=f"{prefix}-{i + 1:03d}",
            geometry=geometry if geometry is not None else BearingGeometry(),
            shaft_hz=float(shaft[i]),
            fault_mode=modes[i],
            life_hours=math.inf if modes[i] == "none" else float(lives[i]),
            onset_fraction=float(onsets[i]),
            growth_rate=float(growth[i]),
            sample_rate_hz=sample_rate_hz,
            n_samples=n_samples,
            resonance_hz=float(resonance[i]),
            damping_ratio=float(damping[i]),
            ambient_c=float(ambient[i]),
            imbalance_g=float(imbalance[i]),
            noise_g=float(noise[i]),
            mean_run_hours=float(run_hours[i]),
            mean_off_hours=float(off_hours[i]),
        )
        for i in range(n_assets)
    ]
