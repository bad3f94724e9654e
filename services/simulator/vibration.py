"""Synthesise one window of bearing vibration: shaft harmonics, noise and defect impacts.

A localised defect (a spall) is struck once per passing rolling element. Each
strike is a short impulse that rings the structure at its resonance, so the raw
spectrum shows energy around the resonance while the *envelope* of that band
repeats at the defect frequency. Where the defect moves through the load zone
the strikes are amplitude-modulated, which puts sidebands in the envelope
spectrum as on a real machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from cbm.bearing import FaultOrders
from services.simulator.fleet import FaultMode

FloatArray = npt.NDArray[np.float64]

# Ringing is cut after e^-7 (0.1 %) of its initial amplitude: below any noise floor.
_RING_DECAY_NEPERS: Final = 7.0

# Relative amplitude of the 2x and 3x shaft harmonics to 1x (misalignment and
# looseness put some energy there on any real machine).
HARMONIC_SHAPE: Final = (1.0, 0.35, 0.15)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resonance:
    """Describe the structural mode the impacts excite."""

    frequency_hz: float
    damping_ratio: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ImpactTrain:
    """Describe the impacts a localised defect makes during one window.

    ``jitter`` is the rms relative spread of the intervals between impacts (roller
    slip); ``spread`` the lognormal sigma of impact-to-impact amplitude.
    """

    rate_hz: float
    amplitude_g: float
    modulation_hz: float = 0.0
    modulation_depth: float = 0.0
    jitter: float = 0.01
    spread: float = 0.2


@dataclass(frozen=True, slots=True)
class DefectKinematics:
    """Give the impact rate and the load-zone modulation of one defect, in shaft orders."""

    impact_order: float
    modulation_order: float
    modulation_depth: float
    transmission: float


def defect_kinematics(mode: FaultMode, orders: FaultOrders) -> DefectKinematics:
    """Return how a defect of ``mode`` strikes and is modulated, in shaft orders.

    The outer race is fixed, so its defect sits in the load zone and every strike
    is alike. An inner-race defect turns with the shaft and passes through the load
    zone once a revolution; a ball defect does so with the cage (FTF) and, spinning,
    hits both races: twice per ball spin. Transmission is the share of impact
    amplitude that reaches a housing-mounted sensor: the longer path from an inner
    race or ball through more interfaces loses more.
    """
    if mode == "outer":
        return DefectKinematics(orders.bpfo, 0.0, 0.0, 1.0)
    if mode == "inner":
        return DefectKinematics(orders.bpfi, 1.0, 0.5, 0.8)
    if mode == "ball":
        return DefectKinematics(2.0 * orders.bsf, orders.ftf, 0.5, 0.7)
    raise ValueError(f"fault mode {mode!r} has no defect")


def shaft_harmonics(
    rng: np.random.Generator, time_s: FloatArray, *, shaft_hz: float, amplitude_g: float
) -> FloatArray:
    """Return 1x, 2x and 3x shaft-speed sinusoids with random phases."""
    orders = np.arange(1, len(HARMONIC_SHAPE) + 1, dtype=np.float64)
    phases = rng.uniform(0.0, 2.0 * math.pi, orders.size)
    amplitudes = amplitude_g * np.asarray(HARMONIC_SHAPE)
    waves = np.sin(2.0 * math.pi * shaft_hz * orders[:, None] * time_s + phases[:, None])
    result: FloatArray = amplitudes @ waves
    return result


def impacts(
    rng: np.random.Generator,
    train: ImpactTrain,
    resonance: Resonance,
    *,
    n_samples: int,
    sample_rate_hz: float,
) -> FloatArray:
    """Return the ringing response to a train of defect impacts over one window."""
    omega_n = 2.0 * math.pi * resonance.frequency_hz
    decay_per_s = resonance.damping_ratio * omega_n
    omega_d = omega_n * math.sqrt(1.0 - resonance.damping_ratio**2)
    ring_samples = math.ceil(_RING_DECAY_NEPERS / decay_per_s * sample_rate_hz)
    duration_s = n_samples / sample_rate_hz
    lead_s = ring_samples / sample_rate_hz
    period_s = 1.0 / train.rate_hz

    # Start the train before the window so that a strike just before t=0 still rings
    # into it, as it would on a machine that has been turning all along.
    count = math.ceil((duration_s + lead_s) / period_s) + 1
    intervals = period_s * np.maximum(1.0 + train.jitter * rng.standard_normal(count), 0.5)
    starts = -lead_s + period_s * rng.random() + np.cumsum(intervals) - intervals[0]
    starts = starts[starts < duration_s]

    modulation = 1.0 + train.modulation_depth * np.cos(
        2.0 * math.pi * train.modulation_hz * starts + rng.uniform(0.0, 2.0 * math.pi)
    )
    # Mean-one lognormal, so ``spread`` changes impulsiveness, not the average level.
    strength = rng.lognormal(-0.5 * train.spread**2, train.spread, starts.size)
    amplitudes = train.amplitude_g * modulation * strength

    first = np.ceil(starts * sample_rate_hz).astype(np.int64)
    index = first[:, None] + np.arange(ring_samples)
    lag_s = index / sample_rate_hz - starts[:, None]
    ringing = amplitudes[:, None] * np.exp(-decay_per_s * lag_s) * np.sin(omega_d * lag_s)
    inside = (index >= 0) & (index < n_samples)
    # Overlapping ringing adds up; bincount sums per sample index in one pass.
    summed = np.bincount(index[inside], weights=ringing[inside], minlength=n_samples)
    return np.asarray(summed, dtype=np.float64)


def synthesize(
    rng: np.random.Generator,
    *,
    n_samples: int,
    sample_rate_hz: float,
    shaft_hz: float,
    harmonic_g: float,
    noise_g: float,
    sensor_noise_g: float,
    train: ImpactTrain | None,
    resonance: Resonance,
) -> npt.NDArray[np.float32]:
    """Return one window of acceleration in g as float32, the sensor's wire format.

    ``shaft_hz = 0`` means the machine stands still: only the sensor's own noise
    remains.
    """
    time_s = np.arange(n_samples, dtype=np.float64) / sample_rate_hz
    # Machine and sensor noise are independent Gaussians: one draw of their sum.
    broadband = math.hypot(noise_g, sensor_noise_g)
    signal = broadband * rng.standard_normal(n_samples)
    if shaft_hz > 0:
        signal += shaft_harmonics(rng, time_s, shaft_hz=shaft_hz, amplitude_g=harmonic_g)
    if train is not None and train.amplitude_g > 0:
        signal += impacts(rng, train, resonance, n_samples=n_samples, sample_rate_hz=sample_rate_hz)
    return signal.astype(np.float32)
