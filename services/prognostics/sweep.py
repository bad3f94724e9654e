"""Sweep the RUL alarm threshold: precision, recall, F1 and expected cost at each one.

Pure. At each threshold the fleet is replayed through the alerter's rules with
``warning_hours`` set to the threshold, so "alarm" means exactly what the live
alerter does: the RUL (point, or the interval's lower bound when the rules say
``use_interval_bound``) stays below the threshold for ``debounce_count``
running predictions. The critical and emergency thresholds keep their ratio to
the warning threshold (the order the rules demand); they do not change when an
alarm is raised, only how bad it is. Per-asset overrides do not apply: the
sweep looks for one fleet-wide threshold.

A model's RUL never exceeds its cap. When the cap is known, a threshold whose
alarms could never resolve (threshold + hysteresis >= cap: the rules wait for
a RUL above that) is scored but not chosen; thresholds at or above the cap
fall under the same rule (every running asset alarms at once, for good).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.alerter.policy import AlertRules
from services.prognostics.backtest import DEFAULT_HORIZON_HOURS, run_backtest
from services.prognostics.results import CostModel, Totals
from services.prognostics.series import AssetSeries


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepPoint:
    """Score the fleet at one warning threshold."""

    threshold_hours: float
    totals: Totals
    eligible: bool = True  # False: alarms could never resolve under the model's cap


@dataclass(frozen=True, slots=True, kw_only=True)
class Sweep:
    """Hold every threshold's score and the two chosen thresholds.

    ``best_f1`` maximises F1; ``cheapest`` minimises the expected cost under
    ``costs``; both among the eligible points. Ties go to the longer median
    lead time (at equal scores, the earlier warning leaves more time to plan
    the repair), then to the lower threshold.
    """

    points: tuple[SweepPoint, ...]
    best_f1: SweepPoint
    cheapest: SweepPoint
    horizon_hours: float
    costs: CostModel
    use_interval_bound: bool
    cap_hours: float | None = None


def thresholds_between(start: float, stop: float, step: float) -> tuple[float, ...]:
    """Return ``start, start + step, ...`` up to and including ``stop`` (within rounding)."""
    if not (math.isfinite(start) and math.isfinite(stop) and start > 0 and stop >= start):
        msg = f"need 0 < start <= stop, got {start!r}..{stop!r}"
        raise ValueError(msg)
    if not (math.isfinite(step) and step > 0):
        msg = f"step must be > 0, got {step!r}"
        raise ValueError(msg)
    count = math.floor((stop - start) / step + 1e-9) + 1
    return tuple(round(start + i * step, 9) for i in range(count))


def rules_at(rules: AlertRules, warning_hours: float) -> AlertRules:
    """Return ``rules`` with the warning threshold moved, the lower ones scaled with it."""
    scale = warning_hours / rules.warning_hours
    return dataclasses.replace(
        rules,
        warning_hours=warning_hours,
        critical_hours=rules.critical_hours * scale,
        emergency_hours=rules.emergency_hours * scale,
    )


def sweep_thresholds(
    series: Sequence[AssetSeries],
    rules: AlertRules,
    thresholds: Sequence[float],
    *,
    horizon_hours: float = DEFAULT_HORIZON_HOURS,
    costs: CostModel | None = None,
    cap_hours: float | None = None,
) -> Sweep:
    """Replay the fleet at every threshold and pick the best-F1 and the cheapest one.

    ``cap_hours`` is the model's RUL cap, if known (see the module docstring).
    """
    if not thresholds:
        msg = "the sweep needs at least one threshold"
        raise ValueError(msg)
    costs = costs or CostModel()
    points = tuple(
        SweepPoint(
            threshold_hours=threshold,
            totals=run_backtest(
                series, rules_at(rules, threshold), horizon_hours=horizon_hours, costs=costs
            ).totals,
            eligible=cap_hours is None or threshold + rules.hysteresis_hours < cap_hours,
        )
        for threshold in sorted(set(thresholds))
    )
    return Sweep(
        points=points,
        best_f1=best_f1(points),
        cheapest=cheapest(points),
        horizon_hours=horizon_hours,
        costs=costs,
        use_interval_bound=rules.use_interval_bound,
        cap_hours=cap_hours,
    )


def best_f1(points: Sequence[SweepPoint]) -> SweepPoint:
    """Return the eligible point of highest F1; ties: the longest lead, then the lowest threshold.

    Without eligible points every point competes.
    """
    return min(_candidates(points), key=lambda p: (-p.totals.f1, *_tie_break(p)))


def cheapest(points: Sequence[SweepPoint]) -> SweepPoint:
    """Return the eligible point of lowest cost; ties: the longest lead, then the lowest threshold.

    Without eligible points every point competes.
    """
    return min(_candidates(points), key=lambda p: (p.totals.cost, *_tie_break(p)))


def _candidates(points: Sequence[SweepPoint]) -> Sequence[SweepPoint]:
    eligible = [p for p in points if p.eligible]
    return eligible or points


def _tie_break(point: SweepPoint) -> tuple[float, float]:
    lead = point.totals.median_lead_hours
    return (-(lead if lead is not None else 0.0), point.threshold_hours)
