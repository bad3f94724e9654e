"""The threshold sweep against an independent re-implementation of the alarm logic."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.alerter.policy import AlertRules
from services.prognostics.results import CostModel, Totals
from services.prognostics.series import AssetSeries, PredictionPoint
from services.prognostics.sweep import (
    SweepPoint,
    best_f1,
    cheapest,
    rules_at,
    sweep_thresholds,
    thresholds_between,
)

T0 = datetime(2026, 2, 1, tzinfo=UTC)
RULES = AlertRules()  # warning 50, hysteresis 5, debounce 2
HORIZON = 60.0
THRESHOLDS = thresholds_between(10, 100, 5)


@dataclass
class Asset:
    asset_id: str
    ruls: list[float]
    failure: float | None  # at the hour of the last point, or never


# A model that is late by these hours on the failing assets, and the RUL level it
# wrongly sees on the healthy ones: a late failure needs a high threshold to be
# caught, and a high threshold raises on the half-worn-looking healthy machines.
FAILING_BIAS_HOURS = (-5.0, 0.0, 5.0, 10.0, 20.0, 30.0, 40.0, 45.0)
HEALTHY_LEVEL_HOURS = (38.0, 48.0, 58.0, 68.0, 85.0)


def random_fleet(seed: int) -> list[Asset]:
    """A fleet with a real trade-off: no threshold catches every failure without false alarms."""
    rng = np.random.default_rng(seed)
    fleet = []
    for i, bias in enumerate(FAILING_BIAS_HOURS):
        life = int(rng.integers(100, 200))
        truth = np.minimum(np.arange(life - 1, -1, -1, dtype=float), 90.0)
        ruls = np.clip(truth + bias + rng.normal(0.0, 2.0, life), 0.0, 90.0)
        fleet.append(Asset(f"fail{i}", [float(r) for r in ruls], float(life - 1)))
    for i, level in enumerate(HEALTHY_LEVEL_HOURS):
        life = int(rng.integers(100, 200))
        ruls = np.clip(level + rng.normal(0.0, 2.0, life), 0.0, 90.0)
        fleet.append(Asset(f"ok{i}", [float(r) for r in ruls], None))
    return fleet


def to_series(fleet: list[Asset]) -> list[AssetSeries]:
    return [
        AssetSeries(
            asset_id=a.asset_id,
            points=tuple(
                PredictionPoint(
                    time=T0 + timedelta(hours=h), hours=float(h), rul_hours=r, rul_low=r, rul_high=r
                )
                for h, r in enumerate(a.ruls)
            ),
            failures=() if a.failure is None else (a.failure,),
        )
        for a in fleet
    ]


def independent_scores(fleet: list[Asset], threshold: float) -> dict[str, float]:
    """Score one threshold from first principles: plain loops, no alerter code."""
    hysteresis, debounce = RULES.hysteresis_hours, RULES.debounce_count
    detected = false = missed = failures = 0
    leads = []
    for a in fleet:
        raises, active = [], False
        for h in range(debounce - 1, len(a.ruls)):
            window = a.ruls[h - debounce + 1 : h + 1]
            if not active and all(r < threshold for r in window):
                active = True
                raises.append(float(h))
            elif active and all(r > threshold + hysteresis for r in window):
                active = False
        end = len(a.ruls) - 1
        caught = [r for r in raises if a.failure is not None and 0 <= a.failure - r <= HORIZON]
        for r in raises:
            if r in caught:
                continue
            if a.failure is None and end - r < HORIZON:
                continue  # pending
            false += 1
        if a.failure is not None:
            failures += 1
            if caught:
                detected += 1
                leads.append(a.failure - min(caught))
            else:
                missed += 1
    precision = detected / (detected + false) if detected + false else 0.0
    recall = detected / failures
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "detected": detected,
        "false": false,
        "missed": missed,
        "f1": f1,
        "lead": statistics.median(leads) if leads else 0.0,
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sweep_matches_an_independent_computation_and_picks_the_best_f1(seed: int) -> None:
    fleet = random_fleet(seed)
    sweep = sweep_thresholds(to_series(fleet), RULES, THRESHOLDS, horizon_hours=HORIZON)
    expected = {t: independent_scores(fleet, t) for t in THRESHOLDS}
    for point in sweep.points:
        want = expected[point.threshold_hours]
        got = point.totals
        assert (got.detected, got.false_alarms, got.missed) == (
            want["detected"],
            want["false"],
            want["missed"],
        ), point.threshold_hours
        assert got.f1 == pytest.approx(want["f1"])
    top = max(s["f1"] for s in expected.values())
    assert sweep.best_f1.totals.f1 == pytest.approx(top)
    # Among equal F1, the longest median lead, then the lowest threshold.
    ties = [t for t in THRESHOLDS if expected[t]["f1"] == pytest.approx(top)]
    want_threshold = min(ties, key=lambda t: (-expected[t]["lead"], t))
    assert sweep.best_f1.threshold_hours == want_threshold
    # The fleet is built so that neither extreme wins.
    assert THRESHOLDS[0] < sweep.best_f1.threshold_hours < THRESHOLDS[-1]


def test_the_cost_weighted_threshold_follows_the_costs() -> None:
    series = to_series(random_fleet(1))
    misses_dear = sweep_thresholds(
        series,
        RULES,
        THRESHOLDS,
        horizon_hours=HORIZON,
        costs=CostModel(miss=10_000, false_alarm=500),
    )
    alarms_dear = sweep_thresholds(
        series,
        RULES,
        THRESHOLDS,
        horizon_hours=HORIZON,
        costs=CostModel(miss=500, false_alarm=10_000),
    )
    for sweep in (misses_dear, alarms_dear):
        costs = sweep.costs
        prices = {
            p.threshold_hours: costs.miss * p.totals.missed
            + costs.false_alarm * p.totals.false_alarms
            for p in sweep.points
        }
        assert sweep.cheapest.totals.cost == min(prices.values())
    # Dear misses push the threshold up (alarm earlier, accept false alarms); dear
    # false alarms push it down.
    assert misses_dear.cheapest.threshold_hours > alarms_dear.cheapest.threshold_hours
    assert misses_dear.cheapest.totals.missed <= alarms_dear.cheapest.totals.missed
    assert misses_dear.cheapest.totals.false_alarms >= alarms_dear.cheapest.totals.false_alarms


def test_ties_go_to_the_longer_lead_then_the_lower_threshold() -> None:
    def point(threshold: float, detected: int, false: int, leads: tuple[float, ...]) -> SweepPoint:
        totals = Totals(
            assets=3,
            failures=2,
            detected=detected,
            alarms=detected + false,
            true_alarms=detected,
            false_alarms=false,
            pending=0,
            notifications=0,
            cost=10_000.0 * (2 - detected) + 500.0 * false,
            lead_hours=leads,
        )
        return SweepPoint(threshold_hours=threshold, totals=totals)

    points = [
        point(50, 1, 3, (40.0,)),
        point(40, 1, 0, (25.0,)),
        point(30, 1, 0, (25.0,)),
        point(20, 1, 0, (10.0,)),
    ]
    assert best_f1(points).threshold_hours == 30
    assert cheapest(points).threshold_hours == 30


def test_rules_at_moves_the_warning_threshold_and_keeps_the_order() -> None:
    moved = rules_at(RULES, 10.0)
    assert (moved.warning_hours, moved.critical_hours, moved.emergency_hours) == (10.0, 4.0, 1.0)
    assert moved.debounce_count == RULES.debounce_count
    assert moved.hysteresis_hours == RULES.hysteresis_hours


def test_thresholds_between_includes_the_end() -> None:
    assert thresholds_between(10, 100, 5) == tuple(float(t) for t in range(10, 101, 5))
    assert thresholds_between(10, 12, 0.5) == (10.0, 10.5, 11.0, 11.5, 12.0)
    with pytest.raises(ValueError):
        thresholds_between(0, 10, 1)


def test_thresholds_whose_alarms_could_never_resolve_are_not_chosen() -> None:
    # A model capped at 60 h on a machine that fails at hour 100: every threshold
    # catches it, and the higher the earlier, but above 55 (+ 5 h hysteresis) an
    # alarm would need a RUL above the cap to clear.
    capped = Asset("capped", [min(60.0, 100.0 - h) for h in range(101)], 100.0)
    series = to_series([capped])
    free = sweep_thresholds(series, RULES, (50, 55, 60), horizon_hours=100.0)
    assert free.best_f1.threshold_hours == 60
    bounded = sweep_thresholds(series, RULES, (50, 55, 60), horizon_hours=100.0, cap_hours=60.0)
    assert [p.eligible for p in bounded.points] == [True, False, False]
    assert bounded.best_f1.threshold_hours == bounded.cheapest.threshold_hours == 50
    only_capped = sweep_thresholds(series, RULES, (55, 60), horizon_hours=100.0, cap_hours=60.0)
    assert only_capped.best_f1.threshold_hours == 60
