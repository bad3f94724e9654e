"""Replay predictions through the alert rules and score the alarms against failures.

Pure: no I/O, no clock. The alarms come from the alerter's own rules core
(``services.alerter.rules.step_prediction``), so a backtest sees exactly the
debounce, hysteresis and levels the live alerter applies; nothing is sent.

Two clocks per prediction: ``time`` (event time) orders the predictions and is
what the rules see; ``hours`` is the position on the *evaluation axis*, on
which failures, lead times and the horizon are measured. For a simulated fleet
the axis is operating hours; for recorded data it is event time scaled by a
factor (see :func:`series_on_event_time`). Definitions, in short (the full text
is docs/backtest.md):

- alarm: an episode of the ``rul`` channel, i.e. its raise (leaving OK);
- true alarm: a failure of the asset follows the raise within the horizon
  (``0 <= failure - raise <= horizon``), it is matched to the first such failure;
- false alarm: no failure follows within the horizon, and the asset was
  observed for at least the horizon after the raise;
- pending alarm: neither yet (observation ends sooner); left out of every score;
- detected failure: at least one true alarm is matched to it; otherwise missed;
- lead time at a level: failure minus the first time one of the failure's
  matched episodes reached that level (raise or escalation), before the failure.

Precision is detected failures over (detected failures + false alarms), so a
flapping alarm before one failure is not rewarded; recall is detected failures
over failures; expected cost is ``miss * missed + false_alarm * false alarms``.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from services.alerter.events import Prediction, ensure_utc
from services.alerter.levels import Channel, Kind, Level
from services.alerter.policy import AlertRules
from services.alerter.rules import step_prediction
from services.alerter.state import AssetAlertState

DEFAULT_HORIZON_HOURS: Final = 100.0
ALARM_LEVELS: Final = (Level.WARNING, Level.CRITICAL, Level.EMERGENCY)
_MODEL_VERSION: Final = "backtest"


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


@dataclass(frozen=True, slots=True)
class _Rise:
    """Record a notification that moved the rul channel up: a raise or an escalation."""

    episode: int
    time: datetime
    hours: float
    level: Level
    kind: Kind


def run_backtest(
    series: Sequence[AssetSeries],
    rules: AlertRules,
    *,
    overrides: Mapping[str, AlertRules] | None = None,
    horizon_hours: float = DEFAULT_HORIZON_HOURS,
    costs: CostModel | None = None,
) -> Backtest:
    """Replay every asset through its rules (``overrides`` per asset) and score the fleet."""
    if not horizon_hours > 0:
        msg = f"horizon_hours must be > 0, got {horizon_hours!r}"
        raise ValueError(msg)
    costs = costs or CostModel()
    own = overrides or {}
    results = tuple(
        score_asset(s, own.get(s.asset_id, rules), horizon_hours=horizon_hours) for s in series
    )
    return Backtest(
        assets=results,
        totals=totals(results, costs),
        rules=rules,
        horizon_hours=horizon_hours,
        costs=costs,
    )


def score_asset(series: AssetSeries, rules: AlertRules, *, horizon_hours: float) -> AssetResult:
    """Replay one asset's predictions through the rules; match its alarms to its failures."""
    rises, notifications = _replay(series, rules)
    first_hours = series.points[0].hours if series.points else math.inf
    scored = [f for f in series.failures if f >= first_hours]
    ends = list(scored)
    if series.points:
        ends.append(series.points[-1].hours)
    if series.observed_until is not None:
        ends.append(series.observed_until)
    end = max(ends, default=-math.inf)

    alarms: list[Alarm] = []
    for rise in rises:
        if rise.kind is not Kind.RAISE:
            continue
        nxt = _next_failure(scored, rise.hours)
        if nxt is not None and nxt - rise.hours <= horizon_hours:
            outcome, matched = Outcome.TRUE, nxt
        elif nxt is None and end - rise.hours < horizon_hours:
            outcome, matched = Outcome.PENDING, None
        else:
            outcome, matched = Outcome.FALSE, None
        alarms.append(
            Alarm(
                episode=rise.episode,
                time=rise.time,
                hours=rise.hours,
                level=rise.level,
                outcome=outcome,
                failure_hours=matched,
            )
        )

    failures = []
    for failure in scored:
        episodes = {a.episode for a in alarms if a.failure_hours == failure}
        lead: dict[Level, float | None] = {}
        for level in ALARM_LEVELS:
            reached = [
                r.hours
                for r in rises
                if r.episode in episodes and r.level >= level and r.hours <= failure
            ]
            lead[level] = failure - min(reached) if reached else None
        failures.append(FailureResult(hours=failure, detected=bool(episodes), lead_hours=lead))

    first_reached = {
        level: min((r.hours for r in rises if r.level >= level), default=None)
        for level in ALARM_LEVELS
    }
    return AssetResult(
        asset_id=series.asset_id,
        predictions=len(series.points),
        alarms=tuple(alarms),
        failures=tuple(failures),
        first_reached_hours=first_reached,
        notifications=notifications,
        unobserved_failures=len(series.failures) - len(scored),
    )


def totals(results: Sequence[AssetResult], costs: CostModel) -> Totals:
    """Sum per-asset results and price them."""
    failures = [f for r in results for f in r.failures]
    detected = [f for f in failures if f.detected]
    false_alarms = sum(r.count(Outcome.FALSE) for r in results)
    missed = len(failures) - len(detected)
    return Totals(
        assets=len(results),
        failures=len(failures),
        detected=len(detected),
        alarms=sum(len(r.alarms) for r in results),
        true_alarms=sum(r.count(Outcome.TRUE) for r in results),
        false_alarms=false_alarms,
        pending=sum(r.count(Outcome.PENDING) for r in results),
        notifications=sum(r.notifications for r in results),
        cost=costs.miss * missed + costs.false_alarm * false_alarms,
        lead_hours=tuple(
            lead for f in detected if (lead := f.lead_hours[Level.WARNING]) is not None
        ),
    )


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


def _replay(series: AssetSeries, rules: AlertRules) -> tuple[list[_Rise], int]:
    """Return the rul channel's raises and escalations, and how many notifications it sent."""
    state: AssetAlertState | None = None
    rises: list[_Rise] = []
    notifications = 0
    for point in series.points:
        prediction = Prediction(
            asset_id=series.asset_id,
            time=point.time,
            rul_hours=point.rul_hours,
            rul_low=point.rul_low,
            rul_high=point.rul_high,
            anomaly_score=point.anomaly_score,
            running=point.running,
            model_version=_MODEL_VERSION,
        )
        state, sent = step_prediction(state, prediction, rules)
        for notification in sent:
            if notification.channel is not Channel.RUL:
                continue
            notifications += 1
            if notification.kind in (Kind.RAISE, Kind.ESCALATE):
                rises.append(
                    _Rise(
                        episode=notification.episode,
                        time=notification.time,
                        hours=point.hours,
                        level=notification.level,
                        kind=notification.kind,
                    )
                )
    return rises, notifications


def _next_failure(failures: Sequence[float], hours: float) -> float | None:
    """Return the first failure at or after ``hours`` (``failures`` sorted)."""
    index = bisect.bisect_left(failures, hours)
    return failures[index] if index < len(failures) else None
