"""Inference's SQL: rebuild sequences from feature_vector, write prediction rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import psycopg
from psycopg import sql

from cbm import tables
from cbm.maintenance import RESET_KINDS
from cbm.prediction import PredictionMessage
from services.features.columns import FEATURE_NAMES

_FEATURES = sql.SQL(", ").join(sql.Identifier(n) for n in FEATURE_NAMES)
# Each asked asset with the time before which to look and the start of the life
# that time falls in: its latest repair or replacement before it (-infinity if none).
# Parameters: asset ids, times, reset kinds.
_LIFE = sql.SQL(
    """SELECT q.asset_id, q.before, coalesce(r.began, '-infinity') AS began
       FROM unnest(%b::text[], %b::timestamptz[]) AS q(asset_id, before)
       LEFT JOIN LATERAL (
           SELECT max(m.time) AS began FROM {events} m
           WHERE m.asset_id = q.asset_id AND m.kind = ANY(%s) AND m.time < q.before) r ON true"""
).format(events=sql.Identifier(tables.MAINTENANCE_EVENT))


@dataclass
class StoredHistory:
    """What the database holds of one asset before a point in time (oldest first)."""

    recent: list[np.ndarray[Any, np.dtype[np.float64]]] = field(default_factory=list)
    baseline: list[np.ndarray[Any, np.dtype[np.float64]]] = field(default_factory=list)
    last_time: datetime | None = None
    last_rul: tuple[float, float, float] | None = None
    life_began: datetime | None = None  # the repair or replacement the life began at


def load_history(
    conn: psycopg.Connection[Any],
    before: dict[str, datetime],
    *,
    lookback: int,
    baseline: int,
    shadow_version: str | None = None,
) -> dict[str, StoredHistory]:
    """Return each asset's last ``lookback`` and first ``baseline`` running vectors before a time.

    Only the life the time falls in counts: rows from before the asset's latest
    repair or replacement belong to the old bearing. Four queries for all
    assets at once, whatever their number. The last RUL comes from the live
    ``prediction`` rows, or with ``shadow_version`` from that shadow model's own.
    """
    assets = sorted(before)
    times = [before[a] for a in assets]
    out = {a: StoredHistory() for a in assets}
    ranked = sql.SQL(
        """SELECT asset_id, rn, {features} FROM (
               SELECT f.*, row_number() OVER (PARTITION BY f.asset_id ORDER BY f.time {order}) rn
               FROM {table} f
               JOIN ({life}) q ON f.asset_id = q.asset_id AND f.time < q.before
               WHERE f.running AND f.time > q.began) s
           WHERE rn <= %s ORDER BY asset_id, time"""
    )
    table = sql.Identifier(tables.FEATURE_VECTOR)
    for order, limit, target in (("DESC", lookback, "recent"), ("ASC", baseline, "baseline")):
        query = ranked.format(features=_FEATURES, order=sql.SQL(order), table=table, life=_LIFE)
        for row in conn.execute(query, (assets, times, list(RESET_KINDS), limit)):
            values = np.array(row[2:], dtype=np.float64)  # NULL -> NaN
            getattr(out[str(row[0])], target).append(values)
    params: tuple[str, ...] = ()
    if shadow_version is None:
        source, version = tables.PREDICTION, sql.SQL("")
    else:
        source, version = tables.SHADOW_PREDICTION, sql.SQL(" AND p.model_version = %s")
        params = (shadow_version,)
    for asset_id, time, rul, low, high in conn.execute(
        sql.SQL(
            """SELECT DISTINCT ON (p.asset_id) p.asset_id, p.time, p.rul_hours, p.rul_low,
                      p.rul_high
               FROM {table} p
               JOIN ({life}) q ON p.asset_id = q.asset_id AND p.time < q.before
               WHERE p.time > q.began{version}
               ORDER BY p.asset_id, p.time DESC"""
        ).format(table=sql.Identifier(source), life=_LIFE, version=version),
        (assets, times, list(RESET_KINDS), *params),
    ):
        history = out[str(asset_id)]
        assert isinstance(time, datetime)
        history.last_time = time
        history.last_rul = (float(rul), float(low), float(high))
    for asset_id, began in conn.execute(
        sql.SQL("SELECT asset_id, nullif(began, '-infinity'::timestamptz) FROM ({life}) q").format(
            life=_LIFE
        ),
        (assets, times, list(RESET_KINDS)),
    ):
        out[str(asset_id)].life_began = began
    return out


def write_predictions(
    conn: psycopg.Connection[Any],
    predictions: Sequence[PredictionMessage],
    received_at: Sequence[datetime],
) -> None:
    """Insert prediction rows once each (a replayed batch hits the primary key)."""
    if not predictions:
        return
    conn.execute(
        f"""INSERT INTO {tables.PREDICTION}
            (asset_id, time, received_at, rul_hours, rul_low, rul_high, health_index,
             anomaly_score, running, model_version, top_features)
            SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::timestamptz[], %b::real[],
                                 %b::real[], %b::real[], %b::real[], %b::real[], %b::bool[],
                                 %b::text[], %b::jsonb[])
            ON CONFLICT DO NOTHING""",
        (
            [p.asset_id for p in predictions],
            [p.time for p in predictions],
            list(received_at),
            [p.rul_hours for p in predictions],
            [p.rul_low for p in predictions],
            [p.rul_high for p in predictions],
            [p.health_index for p in predictions],
            [p.anomaly_score for p in predictions],
            [p.running for p in predictions],
            [p.model_version for p in predictions],
            [orjson.dumps([list(t) for t in p.top_features]).decode() for p in predictions],
        ),
    )


def write_shadow(conn: psycopg.Connection[Any], predictions: Sequence[PredictionMessage]) -> None:
    """Insert a shadow model's rows once each (keyed by asset, time and version)."""
    if not predictions:
        return
    conn.execute(
        f"""INSERT INTO {tables.SHADOW_PREDICTION}
            (asset_id, time, model_version, rul_hours, rul_low, rul_high, anomaly_score, running)
            SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::text[], %b::real[],
                                 %b::real[], %b::real[], %b::real[], %b::bool[])
            ON CONFLICT DO NOTHING""",
        (
            [p.asset_id for p in predictions],
            [p.time for p in predictions],
            [p.model_version for p in predictions],
            [p.rul_hours for p in predictions],
            [p.rul_low for p in predictions],
            [p.rul_high for p in predictions],
            [p.anomaly_score for p in predictions],
            [p.running for p in predictions],
        ),
    )
