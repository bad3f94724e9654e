"""Where a backtest's series come from: the database's records, or a simulated fleet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from cbm.settings import Settings
from services.prognostics import store
from services.prognostics.events import EventKind
from services.prognostics.fleet import SimulatedFleet
from services.prognostics.series import AssetSeries, series_on_event_time
from services.prognostics.simulated import simulate_series


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Hold the series to replay and what the report should say about them."""

    series: list[AssetSeries]
    description: str
    facts: dict[str, Any]  # JSON-ready: kind, axis, sizes, model...
    cap_hours: float | None = None  # the model's RUL cap, when known
    warnings: tuple[str, ...] = field(default=())


def simulated(settings: Settings, fleet: SimulatedFleet, *, models_dir: Path) -> Source:
    """Simulate ``fleet`` through the served model of ``models_dir``."""
    from services.inference.model import RulModel  # noqa: PLC0415 - loads the LiteRT runtime

    model = RulModel.load(models_dir, settings.inference.model_version)
    warnings = []
    if model.meta.document.get("data", {}).get("seed") == fleet.seed:
        warnings.append(f"seed {fleet.seed} is the model's training seed; pick another one")
    series = simulate_series(
        fleet, model=model, features=settings.features, inference=settings.inference
    )
    return Source(
        series=series,
        description=(
            f"simulated fleet (seed {fleet.seed}, mean life {fleet.life_mean_hours:g} h,"
            f" {fleet.healthy_share:.0%} healthy) through model {model.version};"
            " times in operating hours"
        ),
        facts={
            "kind": "simulated",
            "axis": "operating hours",
            "assets": fleet.n_assets,
            "seed": fleet.seed,
            "life_mean_hours": fleet.life_mean_hours,
            "healthy_share": fleet.healthy_share,
            "model_version": model.version,
            "model_cap_hours": model.cap_hours,
        },
        cap_hours=model.cap_hours,
        warnings=tuple(warnings),
    )


def recorded(
    conn: psycopg.Connection[Any],
    *,
    asset_ids: Sequence[str] = (),
    failure_kinds: Sequence[EventKind] = (EventKind.FAILURE,),
    hours_per_second: float = 1 / 3600,
    written_since: datetime | None = None,
) -> Source | None:
    """Return the stored predictions against the stored failures; None without predictions.

    The axis is event time since the earliest prediction, times ``hours_per_second``.
    ``written_since`` keeps only predictions and events written to the database
    at or after that wall-clock time (one demo run among several).
    """
    predictions = store.load_predictions(conn, asset_ids=asset_ids, created_since=written_since)
    failures = store.failure_times(conn, failure_kinds, recorded_since=written_since)
    if asset_ids:
        failures = {a: times for a, times in failures.items() if a in asset_ids}
    if not predictions:
        return None
    origin = min(rows[0][0] for rows in predictions.values())
    series = [
        series_on_event_time(
            asset_id,
            predictions.get(asset_id, []),
            failures.get(asset_id, []),
            origin=origin,
            hours_per_second=hours_per_second,
        )
        for asset_id in sorted(set(predictions) | set(failures))
    ]
    kinds = [k.value for k in failure_kinds]
    return Source(
        series=series,
        description=(
            f"recorded predictions against {', '.join(kinds)} events;"
            f" {hours_per_second * 3600:g} RUL hours per hour of event time"
        ),
        facts={
            "kind": "database",
            "axis": f"event time x {hours_per_second:g} h/s",
            "hours_per_second": hours_per_second,
            "failure_kinds": kinds,
            "predictions": sum(len(rows) for rows in predictions.values()),
            "failures": sum(len(times) for times in failures.values()),
            "origin": origin.isoformat(),
        },
    )
