"""A backtest's input: one asset's predictions and failures on the evaluation axis.

Two clocks per prediction: ``time`` (event time) orders the predictions and is
what the alert rules see; ``hours`` is the position on the *evaluation axis*, on
which failures, lead times and the horizon are measured. For a simulated fleet
the axis is operating hours; for recorded data it is event time scaled by a
factor (see :func:`series_on_event_time`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.alerter.events import ensure_utc


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictionPoint:
    """Carry one prediction of one asset with its place on the evaluation axis."""

    time: datetime
    hours: float
    rul_hours: float
    rul_low: float
    rul_high: float
    anomaly_score: float = 0.0
    running: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", ensure_utc(self.time, "PredictionPoint.time"))
        if not math.isfinite(self.hours):
            msg = f"hours must be finite, got {self.hours!r}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetSeries:
    """Hold one asset's predictions (time order) and its failures on the same axis.

    ``observed_until`` is where observation of the asset ends (default: its
    last prediction or failure, whichever is later); an alarm closer to it than
    the horizon, with no failure after it, is pending.
    """

    asset_id: str
    points: tuple[PredictionPoint, ...]
    failures: tuple[float, ...] = ()
    observed_until: float | None = None

    def __post_init__(self) -> None:
        for before, after in zip(self.points, self.points[1:], strict=False):
            if after.time <= before.time or after.hours < before.hours:
                msg = (
                    f"{self.asset_id}: predictions must be in strictly increasing time with"
                    f" non-decreasing hours, got {before.time.isoformat()} ({before.hours} h)"
                    f" then {after.time.isoformat()} ({after.hours} h)"
                )
                raise ValueError(msg)
        if not all(math.isfinite(f) for f in self.failures):
            msg = f"{self.asset_id}: failure positions must be finite, got {self.failures!r}"
            raise ValueError(msg)
        object.__setattr__(self, "failures", tuple(sorted(self.failures)))


def series_on_event_time(
    asset_id: str,
    predictions: Sequence[tuple[datetime, float, float, float, float, bool]],
    failures: Sequence[datetime],
    *,
    origin: datetime,
    hours_per_second: float,
) -> AssetSeries:
    """Build a series whose evaluation axis is event time since ``origin`` times a scale.

    ``predictions`` are ``(time, rul, low, high, anomaly, running)`` in any
    order. ``hours_per_second`` is how many hours on the RUL scale pass per
    second of event time: ``1/3600`` for a real plant, ``speedup/3600`` for the
    live simulator (``cbm simulate --speedup 3600`` gives 1 h per second).
    """
    if not (math.isfinite(hours_per_second) and hours_per_second > 0):
        msg = f"hours_per_second must be finite and > 0, got {hours_per_second!r}"
        raise ValueError(msg)

    def hours(t: datetime) -> float:
        return (ensure_utc(t, "time") - origin).total_seconds() * hours_per_second

    points = tuple(
        PredictionPoint(
            time=t,
            hours=hours(t),
            rul_hours=rul,
            rul_low=low,
            rul_high=high,
            anomaly_score=anomaly,
            running=running,
        )
        for t, rul, low, high, anomaly, running in sorted(predictions, key=lambda row: row[0])
    )
    return AssetSeries(asset_id=asset_id, points=points, failures=tuple(hours(f) for f in failures))
