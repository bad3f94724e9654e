"""The backtest core on a hand-made fleet whose every number is worked out below."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from services.alerter.levels import Level
from services.alerter.policy import AlertRules
from services.prognostics.backtest import run_backtest
from services.prognostics.results import CostModel, Outcome
from services.prognostics.series import AssetSeries, PredictionPoint, series_on_event_time

T0 = datetime(2026, 2, 1, tzinfo=UTC)
# The alerter's thresholds, spelled out, on the point estimate: the numbers below depend on them.
RULES = AlertRules(
    warning_hours=50.0,
    critical_hours=20.0,
    emergency_hours=5.0,
    hysteresis_hours=5.0,
    debounce_count=2,
    use_interval_bound=False,
)


def series(
    asset_id: str,
    ruls: list[float],
    *,
    failures: tuple[float, ...] = (),
    running: dict[int, bool] | None = None,
    hours: list[float] | None = None,
) -> AssetSeries:
    """One prediction an hour; point i sits at hour i unless ``hours`` says otherwise."""
    running = running or {}
    at = hours or [float(i) for i in range(len(ruls))]
    return AssetSeries(
        asset_id=asset_id,
        points=tuple(
            PredictionPoint(
                time=T0 + timedelta(hours=i),
                hours=at[i],
                rul_hours=rul,
                rul_low=max(0.0, rul - 8.0),
                rul_high=rul + 8.0,
                running=running.get(i, True),
            )
            for i, rul in enumerate(ruls)
        ),
        failures=failures,
    )


def fleet() -> list[AssetSeries]:
    # pump-a fails at hour 100 and the model tracks it from hour 60 on (RUL = 100 - h).
    # RUL < 50 first at h=60 (40), again at 61: debounce 2 -> WARNING raised at 61.
    # RUL < 20 at 81 (19) and 82 (18) -> CRITICAL at 82; < 5 at 96, 97 -> EMERGENCY at 97.
    # Leads: 100 - 61 = 39, 100 - 82 = 18, 100 - 97 = 3.
    pump_a = [60.0] * 60 + [100.0 - h for h in range(60, 101)]
    # fan-b never fails. Dip at hours 30-32 -> raise at 31, back above 55 at 33 and 34
    # -> resolved at 34; 199 - 31 >= 100 h observed after it without a failure: FALSE.
    # Dip at 150-151 -> raise at 151; only 48 h observed after it: PENDING.
    fan_b = [60.0] * 200
    for h in (30, 31, 32, 150, 151):
        fan_b[h] = 40.0
    # motor-c fails at hour 250 but the model only blipped at hours 20-21: raise at 21,
    # resolved at 23; 250 - 21 = 229 > 100: FALSE, and the failure is MISSED.
    motor_c = [60.0] * 251
    motor_c[20] = motor_c[21] = 45.0
    return [
        series("pump-a", pump_a, failures=(100.0,)),
        series("fan-b", fan_b),
        series("motor-c", motor_c, failures=(250.0,)),
    ]


def test_hand_made_fleet_lead_times_false_alarms_and_misses() -> None:
    result = run_backtest(fleet(), RULES, horizon_hours=100.0)
    a, b, c = result.assets

    assert [(x.hours, x.level, x.outcome) for x in a.alarms] == [
        (61.0, Level.WARNING, Outcome.TRUE)
    ]
    (failure,) = a.failures
    assert failure.detected
    assert failure.lead_hours == {Level.WARNING: 39.0, Level.CRITICAL: 18.0, Level.EMERGENCY: 3.0}
    assert a.alarms[0].lead_hours == 39.0
    assert a.first_reached_hours == {
        Level.WARNING: 61.0,
        Level.CRITICAL: 82.0,
        Level.EMERGENCY: 97.0,
    }

    assert [(x.hours, x.outcome) for x in b.alarms] == [
        (31.0, Outcome.FALSE),
        (151.0, Outcome.PENDING),
    ]
    assert b.failures == ()

    assert [(x.hours, x.outcome) for x in c.alarms] == [(21.0, Outcome.FALSE)]
    assert [(f.hours, f.detected) for f in c.failures] == [(250.0, False)]
    assert c.missed == 1
    assert c.failures[0].lead_hours == {
        Level.WARNING: None,
        Level.CRITICAL: None,
        Level.EMERGENCY: None,
    }


def test_hand_made_fleet_precision_recall_f1_and_cost() -> None:
    t = run_backtest(fleet(), RULES, horizon_hours=100.0, costs=CostModel()).totals
    # By hand: 2 failures, 1 detected (pump-a), 1 missed (motor-c);
    # 4 alarms: 1 true, 2 false (fan-b at 31, motor-c at 21), 1 pending (fan-b at 151).
    assert (t.failures, t.detected, t.missed) == (2, 1, 1)
    assert (t.alarms, t.true_alarms, t.false_alarms, t.pending) == (4, 1, 2, 1)
    precision = 1 / (1 + 2)
    recall = 1 / 2
    assert t.precision == pytest.approx(precision)
    assert t.recall == pytest.approx(recall)
    assert t.f1 == pytest.approx(2 * precision * recall / (precision + recall))
    assert t.f1 == pytest.approx(0.4)
    assert t.cost == 10_000 * 1 + 500 * 2
    assert t.lead_hours == (39.0,)


def test_a_shorter_horizon_turns_a_late_catch_into_a_false_alarm_and_a_miss() -> None:
    # pump-a's raise came 39 h before its failure: outside a 30 h horizon.
    t = run_backtest(fleet(), RULES, horizon_hours=30.0).totals
    assert (t.detected, t.missed) == (0, 2)
    # fan-b's second raise is now decided too (48 h observed >= 30 h): false.
    assert (t.false_alarms, t.pending) == (4, 0)


def test_interval_bound_alarms_earlier() -> None:
    # The low bound is RUL - 8. The flat stretch (RUL 60, low 52) stays above 50, so
    # the raise stays at 61; CRITICAL now needs low < 20, i.e. RUL < 28: h=73 (27) and
    # 74 -> escalated at 74, a lead of 26 h instead of 18.
    bound = AlertRules(**{**RULES.__dict__, "use_interval_bound": True})
    (pump_a,) = [s for s in fleet() if s.asset_id == "pump-a"]
    result = run_backtest([pump_a], bound, horizon_hours=100.0)
    assert result.assets[0].failures[0].lead_hours[Level.CRITICAL] == 26.0


def test_a_stopped_machine_neither_raises_nor_holds_up_the_debounce() -> None:
    # Two low readings with a stopped one between them: the stopped one does not
    # count, so the running pair (2 and 4) raises at index 4; the stopped reading
    # keeps its operating hours (the machine did not age).
    ruls = [60.0, 60.0, 30.0, 30.0, 30.0, 30.0]
    s = series(
        "pump-d",
        ruls,
        failures=(10.0,),
        running={3: False},
        hours=[0.0, 1.0, 2.0, 2.0, 3.0, 4.0],
    )
    result = run_backtest([s], RULES, horizon_hours=100.0)
    assert [x.hours for x in result.assets[0].alarms] == [3.0]
    assert result.assets[0].failures[0].lead_hours[Level.WARNING] == 7.0


def test_per_asset_overrides_apply() -> None:
    strict = dataclasses.replace(RULES, warning_hours=30.0)
    result = run_backtest(fleet(), RULES, overrides={"pump-a": strict}, horizon_hours=100.0)
    pump_a = result.assets[0]
    # RUL < 30 first at h=71 (29) and 72: raised at 72, lead 28.
    assert pump_a.failures[0].lead_hours[Level.WARNING] == 28.0


def test_failures_before_the_first_prediction_are_not_scored() -> None:
    s = series("pump-e", [60.0] * 10, failures=(-5.0, 8.0))
    result = run_backtest([s], RULES)
    assert result.assets[0].unobserved_failures == 1
    assert [f.hours for f in result.assets[0].failures] == [8.0]
    assert result.totals.missed == 1


def test_event_time_axis_scales_with_hours_per_second() -> None:
    # The live simulator at --speedup 3600: one second of event time is one RUL hour.
    rows = [
        (T0 + timedelta(seconds=i), 100.0 - i, 90.0 - i, 110.0 - i, 0.0, True) for i in range(71)
    ]
    failure = T0 + timedelta(seconds=100)
    s = series_on_event_time(
        "pump-f", rows[::-1], [failure], origin=T0, hours_per_second=3600 / 3600
    )  # rows in any order
    assert s.points[0].time == T0 and s.failures == (100.0,)
    # RUL < 50 at 51 s and 52 s: raised at 52 "hours", 48 h before the failure.
    result = run_backtest([s], RULES)
    assert result.assets[0].failures[0].lead_hours[Level.WARNING] == 48.0
    # Real time (1/3600 h per second): the same series spans 70 s = 0.019 h.
    real = series_on_event_time("pump-f", rows, [failure], origin=T0, hours_per_second=1 / 3600)
    assert real.failures == (pytest.approx(100 / 3600),)


def test_out_of_order_points_are_refused() -> None:
    with pytest.raises(ValueError, match="increasing time"):
        AssetSeries(
            asset_id="pump-g",
            points=(
                PredictionPoint(
                    time=T0 + timedelta(hours=1), hours=1.0, rul_hours=1, rul_low=0, rul_high=2
                ),
                PredictionPoint(time=T0, hours=0.0, rul_hours=1, rul_low=0, rul_high=2),
            ),
        )
