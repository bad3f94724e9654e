"""Replay predictions through the alert rules and score the alarms against failures.

Pure: no I/O, no clock. The alarms come from the alerter's own rules core
(``services.alerter.rules.step_prediction``), so a backtest sees exactly the
debounce, hysteresis and levels the live alerter applies; nothing is sent.

Predictions and failures are placed on an *evaluation axis* (operating hours,
or scaled event time: see :mod:`services.prognostics.series`); failures, lead
times and the horizon are measured on it. Definitions, in short (the full text
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from services.alerter.events import Prediction
from services.alerter.levels import Channel, Kind, Level
from services.alerter.policy import AlertRules
from services.alerter.rules import step_prediction
from services.alerter.state import AssetAlertState
from services.prognostics.results import (
    Alarm,
    AssetResult,
    Backtest,
    CostModel,
    FailureResult,
    Outcome,
    Totals,
)
from services.prognostics.series import AssetSeries

DEFAULT_HORIZON_HOURS: Final = 100.0
ALARM_LEVELS: Final = (Level.WARNING, Level.CRITICAL, Level.EMERGENCY)
_MODEL_VERSION: Final = "backtest"


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
