"""The simulated path end to end: simulator -> features -> real model -> alert rules -> report."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import pytest

from cbm.settings import Settings
from services.alerter.config import rules_for
from services.alerter.levels import Level
from services.inference.model import RulModel
from services.prognostics.backtest import run_backtest
from services.prognostics.fleet import SimulatedFleet
from services.prognostics.simulated import SIM_START, simulate_series
from services.simulator.physics import simulate_fleet

MODELS = Path(__file__).resolve().parents[2] / "models"
FLEET = SimulatedFleet(n_assets=4, seed=11, life_mean_hours=100.0, healthy_share=0.25)


@pytest.fixture(scope="module")
def model() -> RulModel:
    return RulModel.load(MODELS)


def test_failing_assets_get_finite_lead_times(model: RulModel) -> None:
    settings = Settings()
    series = simulate_series(
        FLEET, model=model, features=settings.features, inference=settings.inference
    )
    windows = list(
        simulate_fleet(FLEET.specs(), seed=FLEET.seed, start=SIM_START, hours_per_window=1.0)
    )
    for s in series:
        own = [w for w in windows if w.asset_id == s.asset_id]
        # One prediction per window, on the operating-hours axis.
        assert [p.time for p in s.points] == [w.time for w in own]
        assert [p.hours for p in s.points] == [w.operating_hours for w in own]
        assert s.failures == ((own[-1].operating_hours,) if own[-1].failed else ())
    failing = {s.asset_id for s in series if s.failures}
    assert len(failing) == 3

    result = run_backtest(series, rules_for(settings.alerting, ""))
    for asset in result.assets:
        if asset.asset_id not in failing:
            continue
        (failure,) = asset.failures
        lead = failure.lead_hours[Level.WARNING]
        assert failure.detected and lead is not None, asset
        assert math.isfinite(lead) and 0 < lead <= result.horizon_hours
    assert result.totals.recall == 1.0


def test_cbm_backtest_simulate_writes_the_reports(cbm, capsys, tmp_path: Path) -> None:
    out = tmp_path / "backtest"
    status = cbm(
        Settings(),
        "backtest",
        "--simulate",
        "3",
        "--life-mean-hours",
        "80",
        "--models-dir",
        str(MODELS),
        "--thresholds",
        "20:60:20",
        "--out",
        str(out),
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "backtest of 3 assets: simulated fleet (seed 11" in printed
    assert "best F1:" in printed and "min expected cost:" in printed
    report = json.loads((out / "backtest.json").read_text())
    assert report["source"]["kind"] == "simulated"
    assert report["source"]["axis"] == "operating hours"
    assert [p["threshold_hours"] for p in report["sweep"]["points"]] == [20.0, 40.0, 60.0]
    assert report["rules"]["warning_hours"] == 50.0
    assert len(report["assets"]) == 3
    alarm_times = [datetime.fromisoformat(x["time"]) for a in report["assets"] for x in a["alarms"]]
    assert alarm_times and all(t >= SIM_START for t in alarm_times)
    assert (out / "precision_recall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
