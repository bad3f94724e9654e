"""Shadow mode: run a candidate beside the live model, compare them on live data, then decide.

``models/SHADOW`` names the candidate; the inference stage runs it on every
batch and writes its rows to ``shadow_prediction`` (never published, so it
cannot alert). :func:`compare` pairs those rows with the live model's rows of
the same asset and time and scores both the same ways: RMSE against the true
RUL as training labels it (``history.label_lives``: rows of a life that ended
in a recorded failure) and a backtest of the alert rules (warned failures,
false alarms, lead time). Promotion moves
``models/CURRENT`` (the running stage switches by itself) and is recorded in
``model_promotion`` like every decision of ``cbm retrain``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import psycopg
from psycopg import sql

from cbm import tables
from cbm.errors import ModelError
from cbm.messages import from_micros, to_micros
from services.alerter.policy import AlertRules
from services.inference.model import (
    SHADOW_FILE,
    RulModel,
    current_version,
    shadow_version,
)
from services.prognostics.backtest import run_backtest
from services.prognostics.results import Backtest
from services.prognostics.series import series_on_event_time
from services.training.artifact import set_current, set_pointer
from services.training.history import FAILURE_KINDS, label_lives, read_events
from services.training.promotion import json_ready

# A side's rows: (time, rul, low, high, anomaly, running), the backtest's shape.
Row = tuple[datetime, float, float, float, float, bool]

_PAIRS: Final = sql.SQL(
    """SELECT s.asset_id, s.time,
              p.rul_hours, p.rul_low, p.rul_high, p.anomaly_score, p.running,
              s.rul_hours, s.rul_low, s.rul_high, s.anomaly_score, s.running, p.model_version
       FROM {shadow} s JOIN {live} p USING (asset_id, time)
       WHERE s.model_version = %s
       ORDER BY s.asset_id, s.time"""
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Side:
    """One model's scores over the shadow period."""

    version: str
    rmse: float  # NaN when no row has a known next failure
    backtest: Backtest

    def summary(self) -> dict[str, Any]:
        """Return the scores (NaN where unknown; ``Comparison.report`` makes them JSON-ready)."""
        t = self.backtest.totals
        return {
            "version": self.version,
            "rmse": self.rmse,
            "failures": t.failures,
            "warned": t.detected,
            "false_alarms": t.false_alarms,
            "precision": t.precision,
            "recall": t.recall,
            "median_warning_lead_hours": t.median_lead_hours,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """The live model and the shadow over the same asset-time pairs."""

    pairs: int
    assets: int
    first: datetime | None
    last: datetime | None
    scored: int  # pairs whose next failure is known and within both models' caps
    mean_abs_diff_hours: float
    live: Side
    shadow: Side

    def shadow_is_better(self) -> bool | None:
        """Return whether the shadow's RMSE is lower; None when neither can be scored."""
        if math.isnan(self.live.rmse) or math.isnan(self.shadow.rmse):
            return None
        return self.shadow.rmse < self.live.rmse

    def report(self) -> dict[str, Any]:
        """Return the comparison as JSON-ready data (stored with a promotion)."""
        report: dict[str, Any] = json_ready(
            {
                "pairs": self.pairs,
                "assets": self.assets,
                "first": None if self.first is None else self.first.isoformat(),
                "last": None if self.last is None else self.last.isoformat(),
                "scored_pairs": self.scored,
                "mean_abs_diff_hours": self.mean_abs_diff_hours,
                "live": self.live.summary(),
                "shadow": self.shadow.summary(),
            }
        )
        return report


def compare(
    conn: psycopg.Connection[Any],
    version: str,
    *,
    rules: AlertRules,
    overrides: Mapping[str, AlertRules] | None = None,
    cap_hours: float,
    hours_per_second: float = 1 / 3600,
) -> Comparison:
    """Score the live rows and the shadow ``version``'s rows of the same assets and times."""
    live: dict[str, list[Row]] = {}
    shadow: dict[str, list[Row]] = {}
    live_versions: set[str] = set()
    query = _PAIRS.format(
        shadow=sql.Identifier(tables.SHADOW_PREDICTION), live=sql.Identifier(tables.PREDICTION)
    )
    with conn.cursor() as cur:
        cur.execute(query, (version,))
        for asset, time, *values, live_version in cur:
            live.setdefault(asset, []).append(_row(time, values[:5]))
            shadow.setdefault(asset, []).append(_row(time, values[5:]))
            live_versions.add(str(live_version))
    times = [row[0] for rows in live.values() for row in rows]
    origin = min(times) if times else None
    # The true RUL of a row as training labels it: the time to the failure that
    # ends its life; a repair or replacement first leaves it unknown (inf). One
    # read of the events serves the labels and the backtest's failures.
    events = read_events(conn)
    failures = {
        asset: [from_micros(t) for t, kind in evs if kind in FAILURE_KINDS]
        for asset, evs in events.items()
    }
    ordered = sorted(live)
    truth = label_lives(
        np.array([a for a in ordered for _ in live[a]]),
        np.array([to_micros(row[0]) for a in ordered for row in live[a]], dtype=np.int64),
        events,
        hours_per_second=hours_per_second,
    ).rul_hours
    scored_rows = np.isfinite(truth) & (truth <= cap_hours)
    sides = []
    for name, rows_of in ((", ".join(sorted(live_versions)) or "none", live), (version, shadow)):
        series = [
            series_on_event_time(
                asset,
                rows,
                failures.get(asset, ()),
                origin=origin,
                hours_per_second=hours_per_second,
            )
            for asset, rows in sorted(rows_of.items())
            if origin is not None  # always, when there are rows
        ]
        predicted = np.array([row[1] for a in ordered for row in rows_of[a]])
        errors = (predicted - truth)[scored_rows]
        rmse = float(np.sqrt(np.mean(np.square(errors)))) if errors.size else math.nan
        result = run_backtest(series, rules, overrides=overrides)
        sides.append(Side(version=name, rmse=rmse, backtest=result))
    live_side, shadow_side = sides
    diffs = [
        abs(a[1] - b[1])
        for asset in live
        for a, b in zip(live[asset], shadow[asset], strict=True)
        if a[5] and b[5]
    ]
    return Comparison(
        pairs=len(times),
        assets=len(live),
        first=origin,
        last=max(times) if times else None,
        scored=int(scored_rows.sum()),
        mean_abs_diff_hours=float(np.mean(diffs)) if diffs else math.nan,
        live=live_side,
        shadow=shadow_side,
    )


def start(models_dir: Path, version: str) -> None:
    """Put ``version`` in shadow: it must load (hash checked) and must not be the live one."""
    RulModel.load(models_dir, version)
    if version == current_version(models_dir):
        raise ModelError(f"{version} is the live model already")
    set_pointer(models_dir, SHADOW_FILE, version)


def stop(models_dir: Path) -> str | None:
    """End shadow mode; return the version that was in shadow (None if none was)."""
    version = shadow_version(models_dir)
    (Path(models_dir) / SHADOW_FILE).unlink(missing_ok=True)
    return version


def promote(models_dir: Path, version: str) -> str:
    """Make the shadow ``version`` live and end shadow mode; return the version it replaced."""
    before = current_version(models_dir)
    set_current(models_dir, version)
    stop(models_dir)
    return before


def caps(models_dir: Path, *versions: str) -> float:
    """Return the smallest RUL cap of these models: beyond it their errors are not comparable."""
    return min(RulModel.load(models_dir, v).cap_hours for v in versions)


def _row(time: datetime, values: Sequence[Any]) -> Row:
    rul, low, high, anomaly, running = values
    return (time, float(rul), float(low), float(high), float(anomaly), bool(running))
