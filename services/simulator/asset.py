"""Step one simulated asset through time: duty cycle, defect growth, vibration, heat.

Pure: no clock, no I/O. All randomness comes from the injected generator. The
ground-truth contract (``rul_hours``, ``severity``) is described in
``services.simulator.physics``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from services.simulator.degradation import DefectGrowth
from services.simulator.fleet import AssetSpec, FaultMode
from services.simulator.vibration import (
    ImpactTrain,
    Resonance,
    defect_kinematics,
    synthesize,
)

# Peak g of a mean impact at failure and full load, before transmission losses.
IMPACT_G_AT_FAILURE: Final = 1.0
# Broadband noise grows by this factor times severity² as damage spreads over the
# race: the late-life rise of overall RMS.
BROADBAND_GROWTH: Final = 1.0
# Accelerometer self-noise: what a standing machine still shows.
SENSOR_NOISE_G: Final = 0.001

# Shaft speed drift (relative) and load (fraction of rated) are Ornstein-Uhlenbeck
# processes in operating time: process demand changes over hours, not windows.
SPEED_DRIFT_SD: Final = 0.015
SPEED_DRIFT_HOURS: Final = 12.0
SPEED_JITTER_SD: Final = 0.002
LOAD_MEAN: Final = 0.8
LOAD_SD: Final = 0.08
LOAD_HOURS: Final = 24.0
# Per-window load jitter: what keeps a single window's features noisy.
LOAD_JITTER_SD: Final = 0.12
LOAD_RANGE: Final = (0.3, 1.2)
# Window-to-window spread (lognormal sigma) of the impact level and of the noise
# floor: transfer-path and lubrication-film changes a window cannot see.
IMPACT_LEVEL_SD: Final = 0.35
NOISE_LEVEL_SD: Final = 0.15

# Temperature: steady rise over ambient at full load, and the extra rise at failure
# from friction in the damaged bearing. The housing follows its heat input with one
# time constant; the defect's friction follows its size with a slower one (debris
# and spent lubricant build up over hours), and stays while the machine stands.
LOAD_RISE_C: Final = 18.0
DEFECT_RISE_C: Final = 20.0
HOUSING_HOURS: Final = 0.75
FRICTION_HOURS: Final = 4.0
DAILY_SWING_C: Final = 3.0
DAILY_PEAK_HOUR_UTC: Final = 15.0
TEMPERATURE_NOISE_C: Final = 0.2

_MICROSECONDS_PER_HOUR: Final = 3_600_000_000


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SimWindow:
    """Hold one simulated window of one asset and its ground truth.

    ``time`` is the event time (aware, UTC). ``operating_hours`` is the running
    time before this window. See ``services.simulator.physics`` for ``rul_hours``.
    Compared by identity: it holds an array.
    """

    asset_id: str
    time: datetime
    seq: int
    samples: npt.NDArray[np.float32]
    sample_rate_hz: float
    temperature_c: float
    shaft_hz: float
    running: bool
    rul_hours: float
    severity: float
    fault_mode: FaultMode
    failed: bool
    operating_hours: float


class AssetSimulator:
    """Step one asset through its life, one window per ``next_window`` call.

    Window ``seq`` is taken at ``start + offset + seq * hours_per_window``, where the
    offset (drawn in ``[0, hours_per_window)``) keeps a fleet's devices out of
    lockstep. Between two windows the machine keeps the state of the earlier one:
    if it was running, it ages by ``hours_per_window``.
    """

    def __init__(
        self,
        spec: AssetSpec,
        *,
        rng: np.random.Generator,
        start: datetime,
        hours_per_window: float = 1.0,
    ) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be a timezone-aware datetime")
        if not hours_per_window > 0:
            raise ValueError(f"hours_per_window must be positive, got {hours_per_window}")
        self._spec = spec
        self._rng = rng
        self._hours = hours_per_window
        self._start = start.astimezone(UTC)
        self._offset_hours = float(rng.uniform(0.0, hours_per_window))
        self._seq = 0
        self._age_hours = 0.0
        self._running = True
        self._failed = False
        self._speed_drift = float(rng.normal(0.0, SPEED_DRIFT_SD))
        self._load = float(rng.normal(LOAD_MEAN, LOAD_SD))
        # The machine has been running before the record starts: warm at steady state.
        self._rise_c = LOAD_RISE_C * self._load
        self._friction = 0.0
        self._resonance = Resonance(
            frequency_hz=spec.resonance_hz, damping_ratio=spec.damping_ratio
        )
        self._kinematics = (
            defect_kinematics(spec.fault_mode, spec.geometry.orders()) if spec.degrades else None
        )
        self._growth = (
            DefectGrowth.draw(spec, rng, step_hours=hours_per_window) if spec.degrades else None
        )

    @property
    def spec(self) -> AssetSpec:
        """Return the asset's spec."""
        return self._spec

    @property
    def failed(self) -> bool:
        """Return whether the failure window has been emitted; no window follows it."""
        return self._failed

    @property
    def next_time(self) -> datetime:
        """Return the event time of the window ``next_window`` will return."""
        micros = round((self._offset_hours + self._seq * self._hours) * _MICROSECONDS_PER_HOUR)
        return self._start + timedelta(microseconds=micros)

    def severity_at(self, operating_hours: float) -> float:
        """Return the defect severity in [0, 1] after ``operating_hours`` of running."""
        return 0.0 if self._growth is None else self._growth.severity_at(operating_hours)

    def next_window(self) -> SimWindow:
        """Advance to the next window and return it; raise once the asset has failed."""
        if self._failed:
            raise RuntimeError(f"asset {self._spec.asset_id} has failed; it emits no more windows")
        if self._seq > 0:
            self._advance()
        window = self._emit()
        self._failed = window.failed
        self._seq += 1
        return window

    def _advance(self) -> None:
        """Move the state on by one window interval."""
        spec, rng, hours = self._spec, self._rng, self._hours
        was_running = self._running
        if was_running:
            self._age_hours = min(self._age_hours + hours, spec.life_hours)

        keep = math.exp(-hours / SPEED_DRIFT_HOURS)
        self._speed_drift = keep * self._speed_drift + SPEED_DRIFT_SD * math.sqrt(
            1 - keep * keep
        ) * float(rng.standard_normal())
        keep = math.exp(-hours / LOAD_HOURS)
        self._load = (
            LOAD_MEAN
            + keep * (self._load - LOAD_MEAN)
            + LOAD_SD * math.sqrt(1 - keep * keep) * float(rng.standard_normal())
        )

        # Exact first-order lags over the interval. Heat flows only while turning, so
        # a standing machine cools toward ambient; its defect friction neither grows
        # nor heals meanwhile.
        if was_running:
            self._friction += (self.severity_at(self._age_hours) - self._friction) * -math.expm1(
                -hours / FRICTION_HOURS
            )
            heat_c = LOAD_RISE_C * self._load + DEFECT_RISE_C * self._friction
        else:
            heat_c = 0.0
        self._rise_c += (heat_c - self._rise_c) * -math.expm1(-hours / HOUSING_HOURS)

        switch = float(rng.random())
        if self._age_hours >= spec.life_hours:
            self._running = True  # the bearing fails in service
        elif was_running:
            self._running = switch >= -math.expm1(-hours / spec.mean_run_hours)
        else:
            self._running = switch < -math.expm1(-hours / spec.mean_off_hours)

    def _emit(self) -> SimWindow:
        """Build the window for the current state."""
        spec, rng = self._spec, self._rng
        time = self.next_time
        severity = self.severity_at(self._age_hours)
        failed = self._age_hours >= spec.life_hours
        load = float(np.clip(self._load + LOAD_JITTER_SD * rng.standard_normal(), *LOAD_RANGE))
        if self._running:
            shaft_hz = spec.shaft_hz * (
                1.0 + self._speed_drift + SPEED_JITTER_SD * float(rng.standard_normal())
            )
            # Imbalance force grows with the square of speed.
            harmonic_g = spec.imbalance_g * (shaft_hz / spec.shaft_hz) ** 2
            noise_g = (
                spec.noise_g
                * float(rng.lognormal(0.0, NOISE_LEVEL_SD))
                * (1.0 + BROADBAND_GROWTH * severity**2)
            )
            train = self._impact_train(shaft_hz, load, severity)
        else:
            shaft_hz = harmonic_g = noise_g = 0.0
            train = None
        samples = synthesize(
            rng,
            n_samples=spec.n_samples,
            sample_rate_hz=spec.sample_rate_hz,
            shaft_hz=shaft_hz,
            harmonic_g=harmonic_g,
            noise_g=noise_g,
            sensor_noise_g=SENSOR_NOISE_G,
            train=train,
            resonance=self._resonance,
        )
        return SimWindow(
            asset_id=spec.asset_id,
            time=time,
            seq=self._seq,
            samples=samples,
            sample_rate_hz=spec.sample_rate_hz,
            temperature_c=self._temperature_c(time),
            shaft_hz=shaft_hz,
            running=self._running,
            rul_hours=spec.life_hours - self._age_hours,
            severity=severity,
            fault_mode=spec.fault_mode,
            failed=failed,
            operating_hours=self._age_hours,
        )

    def _impact_train(self, shaft_hz: float, load: float, severity: float) -> ImpactTrain | None:
        """Return this window's defect impacts, or None while there is no defect."""
        kinematics = self._kinematics
        if kinematics is None or severity <= 0:
            return None
        level = float(self._rng.lognormal(-0.5 * IMPACT_LEVEL_SD**2, IMPACT_LEVEL_SD))
        return ImpactTrain(
            rate_hz=kinematics.impact_order * shaft_hz,
            # Contact force, hence impact strength, scales with load.
            amplitude_g=IMPACT_G_AT_FAILURE * kinematics.transmission * severity * load * level,
            modulation_hz=kinematics.modulation_order * shaft_hz,
            modulation_depth=kinematics.modulation_depth,
            # A growing spall's edges break up: strikes become more irregular.
            spread=0.2 + 0.3 * severity,
        )

    def _temperature_c(self, time: datetime) -> float:
        """Return the bearing housing temperature at ``time``."""
        hour = time.hour + time.minute / 60 + time.second / 3600
        daily = DAILY_SWING_C * math.cos(2 * math.pi * (hour - DAILY_PEAK_HOUR_UTC) / 24)
        noise = TEMPERATURE_NOISE_C * float(self._rng.standard_normal())
        return self._spec.ambient_c + daily + self._rise_c + noise
