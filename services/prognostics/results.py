"""What a backtest returns: alarms and their outcomes, per-failure and per-asset results, totals.

Also the cost model that prices the totals. The definitions of true, false and
pending alarms are in :mod:`services.prognostics.backtest` (and docs/backtest.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from services.alerter.levels import Level
from services.alerter.policy import AlertRules


class Outcome(StrEnum):
    """Name how an alarm turned out."""

    TRUE = "true"
    FALSE = "false"
    PENDING = "pending"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alarm:
    """Describe one raise of the rul channel and how it turned out."""

    episode: int
    time: datetime
    hours: float
    level: Level
    outcome: Outcome
    failure_hours: float | None = None  # the failure it is matched to (true alarms)

    @property
    def lead_hours(self) -> float | None:
        """Return how long before its failure the alarm was raised (true alarms only)."""
        return None if self.failure_hours is None else self.failure_hours - self.hours


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureResult:
    """Say whether one failure was foreseen and how early, per level."""

    hours: float
    detected: bool
    lead_hours: Mapping[Level, float | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetResult:
    """Collect one asset's alarms, failures and notification count."""

    asset_id: str
    predictions: int
    alarms: tuple[Alarm, ...]
    failures: tuple[FailureResult, ...]
    first_reached_hours: Mapping[Level, float | None]  # first time at each level, any episode
    notifications: int  # every rul-channel notification an operator would have got
    unobserved_failures: int = 0  # failures before the first prediction: not scored

    def count(self, outcome: Outcome) -> int:
        """Return how many alarms turned out as ``outcome``."""
        return sum(alarm.outcome is outcome for alarm in self.alarms)

    @property
    def missed(self) -> int:
        """Return how many scored failures no true alarm foresaw."""
        return sum(not f.detected for f in self.failures)


@dataclass(frozen=True, slots=True, kw_only=True)
class CostModel:
    """Price a missed failure and a false alarm (same currency, any unit)."""

    miss: float = 10_000.0
    false_alarm: float = 500.0

    def __post_init__(self) -> None:
        if not (self.miss >= 0 and self.false_alarm >= 0):
            msg = f"costs must be >= 0, got miss={self.miss!r}, false_alarm={self.false_alarm!r}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """Sum a backtest over the fleet and score it."""

    assets: int
    failures: int
    detected: int
    alarms: int
    true_alarms: int
    false_alarms: int
    pending: int
    notifications: int
    cost: float
    lead_hours: tuple[float, ...] = field(default=())  # WARNING lead of each detected failure

    @property
    def missed(self) -> int:
        """Return the failures no true alarm foresaw."""
        return self.failures - self.detected

    @property
    def precision(self) -> float:
        """Return detected / (detected + false alarms); 0 when neither happened."""
        flagged = self.detected + self.false_alarms
        return self.detected / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        """Return detected / failures; 0 without failures."""
        return self.detected / self.failures if self.failures else 0.0

    @property
    def f1(self) -> float:
        """Return the harmonic mean of precision and recall (0 when both are 0)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @property
    def median_lead_hours(self) -> float | None:
        """Return the median WARNING lead time of the detected failures."""
        return statistics.median(self.lead_hours) if self.lead_hours else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Backtest:
    """Hold a whole backtest: per-asset results, totals and what produced them."""

    assets: tuple[AssetResult, ...]
    totals: Totals
    rules: AlertRules
    horizon_hours: float
    costs: CostModel
