"""Which fleets and alert settings let the model announce every failure in order, offline.

The run-to-failure test's fleets go through the real features and inference
cores (``services.prognostics.simulated``, no broker, no database) and then
the alerter's rules, with event times compressed as the live simulator
compresses them (so no rate limit or reminder interval ever elapses). A
machine passes when its rul alerts are exactly WARNING, CRITICAL, EMERGENCY,
all before its failure window. The chain is deterministic for a seed and a
model, so this says in advance whether the end-to-end test passes.

Run: ``python -m tests.e2e.fleet_choice [--fleets 30] [--assets 4] [--life 300]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from cbm.settings import AlertingSettings, AssetsSettings, FeaturesSettings, InferenceSettings
from services.alerter.config import rules_for
from services.alerter.events import Prediction
from services.alerter.rules import step_prediction
from services.alerter.state import AssetAlertState
from services.inference.model import RulModel
from services.prognostics.series import AssetSeries
from services.prognostics.simulated import SIM_START, predict_windows
from services.simulator.asset import SimWindow
from services.simulator.edge import asset_register
from services.simulator.fleet import make_fleet
from services.simulator.physics import simulate_fleet
from tests.support.services import ROOT

ESCALATION = [("raise", "WARNING"), ("escalate", "CRITICAL"), ("escalate", "EMERGENCY")]
SPEEDUP = 3600 * 100
CONFIGS = (
    {"use_interval_bound": False, "debounce_count": 2},
    {"use_interval_bound": False, "debounce_count": 3},
    {"use_interval_bound": True, "debounce_count": 2},  # the defaults
    {"use_interval_bound": True, "debounce_count": 3},
)


@dataclasses.dataclass
class Result:
    """How one alert configuration did over the fleets."""

    machines: int = 0
    fleets: list[int] = dataclasses.field(default_factory=list)
    leads: list[float] = dataclasses.field(default_factory=list)  # operating hours


def compressed(windows: Iterator[SimWindow]) -> Iterator[SimWindow]:
    """Yield the windows stamped as ``publish_fleet`` stamps them (``SPEEDUP`` times faster)."""
    for w in windows:
        yield dataclasses.replace(w, time=SIM_START + (w.time - SIM_START) / SPEEDUP)


def escalations(series: AssetSeries, alerting: AlertingSettings) -> list[tuple[str, str, datetime]]:
    """Return the rul-channel notifications (kind, level, time) the alerter sends for a series."""
    rules = rules_for(alerting, series.asset_id)
    state: AssetAlertState | None = None
    sent = []
    for p in series.points:
        prediction = Prediction(
            asset_id=series.asset_id,
            time=p.time,
            rul_hours=p.rul_hours,
            rul_low=p.rul_low,
            rul_high=p.rul_high,
            anomaly_score=p.anomaly_score,
            running=p.running,
            model_version="offline",
        )
        state, notes = step_prediction(state, prediction, rules)
        sent += [(n.kind.value, n.level.name, n.time) for n in notes if n.channel.value == "rul"]
    return sent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", type=int, default=30, help="seeds 1..N")
    parser.add_argument("--assets", type=int, default=4)
    parser.add_argument("--life", type=float, default=300.0, help="life_mean_hours")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    model = RulModel.load(args.models)
    results = [Result() for _ in CONFIGS]
    for seed in range(1, args.fleets + 1):
        specs = make_fleet(args.assets, seed=seed, life_mean_hours=args.life, healthy_share=0.0)
        series = predict_windows(
            compressed(simulate_fleet(specs, seed=seed, start=SIM_START)),
            specs,
            model=model,
            assets=AssetsSettings.model_validate({"items": asset_register(specs)}),
            features=FeaturesSettings(),
            inference=InferenceSettings(),
        )
        for result, config in zip(results, CONFIGS, strict=True):
            alerting = AlertingSettings.model_validate(config)
            ok = 0
            for s in series:
                sent = escalations(s, alerting)
                last = s.points[-1]
                if [(k, lvl) for k, lvl, _ in sent] == ESCALATION and sent[-1][2] < last.time:
                    ok += 1
                    at = next(p.hours for p in s.points if p.time == sent[-1][2])
                    result.leads.append(last.hours - at)
            result.machines += ok
            if ok == len(series):
                result.fleets.append(seed)
    print(f"model {model.version}, {args.fleets} fleets of {args.assets}, life {args.life:g} h")
    for r, config in zip(results, CONFIGS, strict=True):
        lead = statistics.median(r.leads) if r.leads else float("nan")
        print(
            f"{config}: machines {r.machines}/{args.fleets * args.assets}, "
            f"fleets {len(r.fleets)}/{args.fleets} (first: {r.fleets[:5]}), "
            f"EMERGENCY lead median {lead:.0f} h"
        )


if __name__ == "__main__":
    main()
