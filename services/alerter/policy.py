"""The tunable alert policy: thresholds, hysteresis, debounce, rate limit, reminders."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from services.alerter.levels import Level


@dataclass(frozen=True, kw_only=True)
class AlertRules:
    """Hold every parameter of the alert state machine for one asset.

    Per-asset overrides are the caller's job: build one ``AlertRules`` per asset
    (e.g. with ``dataclasses.replace``) and pass it to the step functions.
    """

    warning_hours: float = 50.0
    critical_hours: float = 20.0
    emergency_hours: float = 5.0
    # A level is left only once RUL rises *above* its threshold plus this margin.
    hysteresis_hours: float = 5.0
    # Consecutive running predictions needed to enter and to leave a level.
    debounce_count: int = 2
    rate_limit: timedelta = timedelta(minutes=15)
    warning_repeat: timedelta = timedelta(hours=4)
    critical_repeat: timedelta = timedelta(hours=1)
    emergency_repeat: timedelta = timedelta(minutes=15)
    # Compare the interval's lower bound instead of the point estimate.
    use_interval_bound: bool = True
    anomaly_threshold: float = 3.0
    anomaly_margin: float = 0.5
    stale_after: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        numbers = {
            "warning_hours": self.warning_hours,
            "critical_hours": self.critical_hours,
            "emergency_hours": self.emergency_hours,
            "hysteresis_hours": self.hysteresis_hours,
            "anomaly_threshold": self.anomaly_threshold,
            "anomaly_margin": self.anomaly_margin,
        }
        for name, value in numbers.items():
            if not math.isfinite(value):
                msg = f"{name} must be finite, got {value!r}"
                raise ValueError(msg)
        if not self.warning_hours > self.critical_hours > self.emergency_hours:
            msg = (
                "thresholds must be strictly decreasing: warning_hours > critical_hours"
                f" > emergency_hours, got {self.warning_hours!r}, {self.critical_hours!r},"
                f" {self.emergency_hours!r}"
            )
            raise ValueError(msg)
        if self.hysteresis_hours < 0 or self.anomaly_margin < 0:
            msg = (
                f"margins must be >= 0, got hysteresis_hours={self.hysteresis_hours!r},"
                f" anomaly_margin={self.anomaly_margin!r}"
            )
            raise ValueError(msg)
        if self.debounce_count < 1:
            msg = f"debounce_count must be >= 1, got {self.debounce_count!r}"
            raise ValueError(msg)
        if self.rate_limit < timedelta(0):
            msg = f"rate_limit must be >= 0, got {self.rate_limit!r}"
            raise ValueError(msg)
        positive = {
            "warning_repeat": self.warning_repeat,
            "critical_repeat": self.critical_repeat,
            "emergency_repeat": self.emergency_repeat,
            "stale_after": self.stale_after,
        }
        for name, interval in positive.items():
            if interval <= timedelta(0):
                msg = f"{name} must be > 0, got {interval!r}"
                raise ValueError(msg)

    def threshold(self, level: Level) -> float:
        """Return the RUL (hours) below which ``level`` is entered."""
        thresholds = {
            Level.WARNING: self.warning_hours,
            Level.CRITICAL: self.critical_hours,
            Level.EMERGENCY: self.emergency_hours,
        }
        if level not in thresholds:
            msg = f"level {level.name} has no threshold"
            raise ValueError(msg)
        return thresholds[level]

    def repeat_interval(self, level: Level) -> timedelta:
        """Return how long ``level`` may stay active without a reminder."""
        intervals = {
            Level.WARNING: self.warning_repeat,
            Level.CRITICAL: self.critical_repeat,
            Level.EMERGENCY: self.emergency_repeat,
        }
        if level not in intervals:
            msg = f"level {level.name} has no reminders"
            raise ValueError(msg)
        return intervals[level]
