"""The prognostics' SQL: record and list maintenance events, read what a backtest replays."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from cbm import tables
from cbm.tables import MAINTENANCE_EVENT
from services.prognostics.events import EventKind, MaintenanceEvent

# (time, rul, low, high, anomaly, running): what series_on_event_time takes.
PredictionRow = tuple[datetime, float, float, float, float, bool]

_EVENTS = sql.Identifier(MAINTENANCE_EVENT)


def add_event(conn: psycopg.Connection[Any], event: MaintenanceEvent) -> bool:
    """Insert ``event`` once; return False if the same (asset, time, kind) is already there."""
    row = conn.execute(
        sql.SQL(
            """INSERT INTO {events} (asset_id, time, kind, note, recorded_by)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (asset_id, time, kind) DO NOTHING
               RETURNING 1"""
        ).format(events=_EVENTS),
        (event.asset_id, event.time, event.kind.value, event.note, event.recorded_by),
    ).fetchone()
    return row is not None


def list_events(
    conn: psycopg.Connection[Any],
    *,
    asset_id: str | None = None,
    kinds: Sequence[EventKind] = (),
    recorded_since: datetime | None = None,
) -> list[MaintenanceEvent]:
    """Return the recorded events, oldest first, of one asset and some kinds (default: all).

    ``recorded_since`` keeps only events written at or after that wall-clock time.
    """
    where: list[sql.Composable] = []
    params: list[Any] = []
    if asset_id is not None:
        where.append(sql.SQL("asset_id = %s"))
        params.append(asset_id)
    if kinds:
        where.append(sql.SQL("kind = ANY(%s)"))
        params.append([k.value for k in kinds])
    if recorded_since is not None:
        where.append(sql.SQL("recorded_at >= %s"))
        params.append(recorded_since)
    query = sql.SQL(
        "SELECT asset_id, time, kind, note, recorded_by, recorded_at FROM {events}{where}"
        " ORDER BY time, asset_id, kind"
    ).format(
        events=_EVENTS,
        where=sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
    )
    return [
        MaintenanceEvent(
            asset_id=str(asset),
            time=time,
            kind=EventKind(str(kind)),
            note=str(note),
            recorded_by=str(by),
            recorded_at=recorded_at,
        )
        for asset, time, kind, note, by, recorded_at in conn.execute(query, params)
    ]


def load_predictions(
    conn: psycopg.Connection[Any],
    *,
    asset_ids: Sequence[str] = (),
    created_since: datetime | None = None,
) -> dict[str, list[PredictionRow]]:
    """Return the stored predictions per asset in time order (of some assets; default: all).

    ``created_since`` keeps only rows written at or after that wall-clock time.
    """
    where: list[sql.Composable] = []
    params: list[Any] = []
    if asset_ids:
        where.append(sql.SQL("asset_id = ANY(%s)"))
        params.append(list(asset_ids))
    if created_since is not None:
        where.append(sql.SQL("created_at >= %s"))
        params.append(created_since)
    query = sql.SQL(
        "SELECT asset_id, time, rul_hours, rul_low, rul_high, anomaly_score, running"
        " FROM {predictions}{where} ORDER BY asset_id, time"
    ).format(
        predictions=sql.Identifier(tables.PREDICTION),
        where=sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
    )
    out: dict[str, list[PredictionRow]] = defaultdict(list)
    with conn.cursor() as cur:
        cur.execute(query, params)
        for asset, time, rul, low, high, anomaly, running in cur:
            out[str(asset)].append(
                (time, float(rul), float(low), float(high), float(anomaly), bool(running))
            )
    return dict(out)


def failure_times(
    conn: psycopg.Connection[Any],
    kinds: Sequence[EventKind] = (EventKind.FAILURE,),
    *,
    recorded_since: datetime | None = None,
) -> dict[str, list[datetime]]:
    """Return per asset the times of events that count as failures, oldest first."""
    out: dict[str, list[datetime]] = defaultdict(list)
    for event in list_events(conn, kinds=kinds, recorded_since=recorded_since):
        out[event.asset_id].append(event.time)
    return dict(out)
